package scheduler

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
)

// billionLaughs is a 400-odd-byte YAML document whose nested aliases
// expand to 9^9 strings.
const billionLaughs = `id: lol
version: "1"
execute: {shell: sh, script: echo, timeout: 1m}
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
`

// YAML aliases expand within a budget: a billion laughs answers 400 naming
// the limit, at once and without the memory; a document with a few
// aliases still goes in. Jobs and schedules alike.
func TestYAMLAliasesBudget(t *testing.T) {
	n := nodetest.Start(t)
	startScheduler(t, n, "n1", newFakeClock(time.Now()))
	nc := n.Conn(t)
	for _, subject := range []string{"kanade.jobs.put", "kanade.schedules.put"} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		code, body := call(t, nc, subject, "application/yaml", billionLaughs)
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		if code != 400 || !strings.Contains(body, "YAML aliases expand past the limit of 100000 nodes") {
			t.Fatalf("%s: %d %s", subject, code, body)
		}
		if took > time.Second {
			t.Errorf("%s: answered after %v", subject, took)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
			t.Errorf("%s: allocated %d MiB", subject, alloc>>20)
		}
	}
	few := "id: few\nversion: \"1\"\nexecute: &x {shell: sh, script: echo, timeout: 1m}\ncopy: *x\n"
	if code, body := call(t, nc, "kanade.jobs.put", "application/yaml", few); code != 200 || !strings.Contains(body, `"copy":{`) {
		t.Fatalf("few aliases: %d %s", code, body)
	}
}

// Huge manifests: a script of "<" is stored at its size (not six-fold
// through \u003c), and a list of several 250 KB scripts still answers, with
// previews marked script_truncated, while get has the whole; a preview put
// back is refused.
func TestHugeManifests(t *testing.T) {
	n := nodetest.Start(t)
	startScheduler(t, n, "n1", newFakeClock(time.Now()))
	nc := n.Conn(t)
	lt := strings.Repeat("<", 200_000)
	job := func(id, script string) string {
		b, _ := api.Marshal(map[string]any{"id": id, "version": "1", "execute": map[string]any{"shell": "sh", "script": script, "timeout": "1m"}})
		return string(b)
	}
	if code, body := call(t, nc, "kanade.jobs.put", "application/json", job("lt", lt)); code != 200 || len(body) > 200_200 || !strings.Contains(body, lt) {
		t.Fatalf("put <: %d, %d bytes", code, len(body))
	}
	if code, body := call(t, nc, "kanade.jobs.get", "", `{"job_id":"lt"}`); code != 200 || !strings.Contains(body, lt) || strings.Contains(body, `\u003c`) {
		t.Fatalf("get <: %d, %d bytes", code, len(body))
	}
	// Run now: the Command carries the script at its size too.
	cmds := subscribeCommands(t, nc, "commands.pc.lt-pc")
	if code, body := call(t, nc, "kanade.jobs.exec", "", `{"job_id":"lt","target":{"pcs":["lt-pc"]}}`); code != 200 {
		t.Fatalf("exec <: %d %s", code, body)
	}
	if c, m := cmds.next(t); c.Script != lt || len(m.Data) > 210_000 {
		t.Fatalf("command: script %d bytes, message %d bytes", len(c.Script), len(m.Data))
	}

	big := strings.Repeat("echo 0123456789abcdef\n", 250_000/22)
	for i := range 5 {
		mustCall(t, nc, "kanade.jobs.put", "application/json", job(fmt.Sprintf("big%d", i), big))
	}
	code, body := call(t, nc, "kanade.jobs.list", "", "")
	var list []struct {
		ID        string          `json:"id"`
		Execute   Execute         `json:"execute"`
		Truncated bool            `json:"script_truncated"`
		Live      json.RawMessage `json:"live"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list) != 6 {
		t.Fatalf("list: %d %.300s", code, body)
	}
	for _, j := range list {
		if !j.Truncated || len([]rune(j.Execute.Script)) != ScriptPreview || j.Live == nil {
			t.Errorf("list item %s: truncated %v, script %d characters, live %s", j.ID, j.Truncated, len(j.Execute.Script), j.Live)
		}
	}
	got := mustCall(t, nc, "kanade.jobs.get", "", `{"job_id":"big3"}`)
	var whole Manifest
	if json.Unmarshal([]byte(got), &whole) != nil || whole.Execute.Script != big || strings.Contains(got, "script_truncated") {
		t.Fatalf("get big3: %d bytes", len(got))
	}
	item, _ := json.Marshal(map[string]any{"id": "big3", "version": "2", "execute": list[3].Execute, "script_truncated": true})
	if code, body := call(t, nc, "kanade.jobs.put", "application/json", string(item)); code != 400 || !strings.Contains(body, "GET /api/jobs/{job_id}") {
		t.Fatalf("put a preview: %d %s", code, body)
	}
}
