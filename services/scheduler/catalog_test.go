package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
)

func TestJobsCatalog(t *testing.T) {
	n := nodetest.Start(t)
	startScheduler(t, n, "a", nil)
	nc := n.Conn(t)

	// JSON, with a field this backend does not know.
	out := mustCall(t, nc, "kanade.jobs.put", "application/json",
		`{"id":"inv","version":"2.0.0","owner":"ops","execute":{"shell":"powershell","script":"Get-CimInstance Win32_BIOS","timeout":"5m","extra":[1,2]}}`)
	var stored map[string]any
	if err := json.Unmarshal([]byte(out), &stored); err != nil || stored["owner"] != "ops" {
		t.Fatalf("put reply %s: unknown field not kept", out)
	}
	// YAML, sniffed without a Content-Type; version 1.0 stays text.
	mustCall(t, nc, "kanade.jobs.put", "", "id: echo-test\nversion: 1.0\ndescription: smoke test\nlabels: {team: desk}\nexecute:\n  shell: sh\n  script: \"echo 'kanade'\"\n  timeout: 1h30m\n  run_as: system\n  cwd: /tmp\n")

	got := mustCall(t, nc, "kanade.jobs.get", "", `{"job_id":"echo-test"}`)
	var m map[string]any
	json.Unmarshal([]byte(got), &m)
	if m["version"] != "1.0" || m["labels"].(map[string]any)["team"] != "desk" {
		t.Errorf("YAML job stored as %s", got)
	}
	ex := m["execute"].(map[string]any)
	if ex["timeout"] != "1h30m" || ex["cwd"] != "/tmp" {
		t.Errorf("YAML execute stored as %v", ex)
	}

	var list []map[string]any
	json.Unmarshal([]byte(mustCall(t, nc, "kanade.jobs.list", "", "")), &list)
	if len(list) != 2 || list[0]["id"] != "echo-test" || list[1]["id"] != "inv" {
		t.Errorf("list: %v", list)
	}

	bad := map[string]string{
		`{"version":"1","execute":{"shell":"sh","script":"x","timeout":"1s"}}`:                          "id is required",
		`{"id":"a b","version":"1","execute":{"shell":"sh","script":"x","timeout":"1s"}}`:               "invalid id",
		`{"id":"a","execute":{"shell":"sh","script":"x","timeout":"1s"}}`:                               "version is required",
		`{"id":"a","version":"1","execute":{"shell":"bash","script":"x","timeout":"1s"}}`:               "invalid execute.shell",
		`{"id":"a","version":"1","execute":{"shell":"sh","timeout":"1s"}}`:                              "execute.script is required",
		`{"id":"a","version":"1","execute":{"shell":"sh","script":"x"}}`:                                "execute.timeout is required",
		`{"id":"a","version":"1","execute":{"shell":"sh","script":"x","timeout":"soon"}}`:               "invalid execute.timeout",
		`{"id":"a","version":"1","execute":{"shell":"sh","script":"x","timeout":"0s"}}`:                 "must be positive",
		`{"id":"a","version":"1","execute":{"shell":"sh","script":"x","timeout":"1s","run_as":"root"}}`: "invalid execute.run_as",
		`{"id":"a","version":1,"execute":{"shell":"sh","script":"x","timeout":"1s"}}`:                   "field version: must be a string",
		`{"id":"a",`: "not a valid JSON object",
		"id: [a\n":   "not valid YAML",
		"- a\n- b\n": "must be a mapping",
	}
	for body, want := range bad {
		code, msg := call(t, nc, "kanade.jobs.put", "", body)
		if code != 400 || !strings.Contains(msg, want) {
			t.Errorf("put %s: %d %q, want 400 containing %q", body, code, msg, want)
		}
	}
	if code, _ := call(t, nc, "kanade.jobs.get", "", `{"job_id":"nope"}`); code != 404 {
		t.Errorf("get unknown: %d", code)
	}
	// Deleting what is not there succeeds, as upstream's does, and
	// leaves no trace in the bucket.
	for _, id := range []string{"nope", "not a valid id"} {
		if code, out := call(t, nc, "kanade.jobs.delete", "", `{"job_id":"`+id+`"}`); code != 200 || out != "" {
			t.Errorf("delete unknown %q: %d %q, want an empty success (204)", id, code, out)
		}
	}
	if _, err := catalogOf(t, n).Jobs.History(context.Background(), "nope"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("delete of an unknown job wrote to the bucket: %v", err)
	}

	// A schedule holds the job: 409 until it goes.
	mustCall(t, nc, "kanade.schedules.put", "", `{"id":"nightly","job_id":"inv","cron":"0 0 2 * * *"}`)
	if code, msg := call(t, nc, "kanade.jobs.delete", "", `{"job_id":"inv"}`); code != 409 || !strings.Contains(msg, "nightly") {
		t.Errorf("delete used job: %d %s", code, msg)
	}
	mustCall(t, nc, "kanade.schedules.delete", "", `{"id":"nightly"}`)
	if code, out := call(t, nc, "kanade.jobs.delete", "", `{"job_id":"inv"}`); code != 200 || out != "" {
		t.Errorf("delete: %d %q, want an empty success (204)", code, out)
	}
	if code, _ := call(t, nc, "kanade.jobs.get", "", `{"job_id":"inv"}`); code != 404 {
		t.Errorf("get deleted: %d", code)
	}
}

func TestSchedulesAPI(t *testing.T) {
	n := nodetest.Start(t)
	clock := newFakeClock(mustTime(t, "2026-05-16T10:17:30Z"))
	startScheduler(t, n, "a", clock)
	nc := n.Conn(t)
	mustCall(t, nc, "kanade.jobs.put", "", echoJob)

	bad := map[string]string{
		`{"id":"s","job_id":"nope","cron":"@hourly"}`:                          "unknown job_id",
		`{"id":"s","job_id":"echo","cron":"61 * * * * *"}`:                     "invalid cron",
		`{"id":"s","job_id":"echo"}`:                                           "cron is required",
		`{"id":"s","job_id":"echo","cron":"@hourly","tz":"Berlin"}`:            "invalid tz",
		`{"job_id":"echo","cron":"@hourly"}`:                                   "id is required",
		`{"id":"s","cron":"@hourly"}`:                                          "job_id is required",
		`{"id":"s","job_id":"echo","cron":"@hourly","target":{}}`:              "empty target",
		`{"id":"s","job_id":"echo","cron":"@hourly","target":{"pcs":["a.b"]}}`: "invalid target pc",
		`{"id":"s","job_id":"echo","cron":"@hourly","jitter":"lots"}`:          "invalid jitter",
		`{"id":"s","job_id":"echo","cron":"@hourly","starting_deadline":"x"}`:  "invalid starting_deadline",
		`{"id":"s","job_id":"echo","cron":"@hourly","enabled":"yes"}`:          "field enabled: must be true or false",
	}
	for body, want := range bad {
		code, msg := call(t, nc, "kanade.schedules.put", "application/json", body)
		if code != 400 || !strings.Contains(msg, want) {
			t.Errorf("put %s: %d %q, want 400 containing %q", body, code, msg, want)
		}
	}

	// Defaults filled in; YAML accepted.
	out := mustCall(t, nc, "kanade.schedules.put", "application/yaml",
		"id: hourly-inventory\ncron: \"0 0 * * * *\"\njob_id: echo\njitter: 5m\nnote: kept\n")
	if out != `{"id":"hourly-inventory","when":"cron 0 0 * * * *","enabled":true,"job_id":"echo"}` {
		t.Errorf("put answered %s, want upstream's summary", out)
	}
	out = mustCall(t, nc, "kanade.schedules.get", "", `{"id":"hourly-inventory"}`)
	var s map[string]any
	json.Unmarshal([]byte(out), &s)
	if s["tz"] != "utc" || s["enabled"] != true || s["note"] != "kept" || s["target"].(map[string]any)["all"] != true {
		t.Errorf("stored schedule %s", out)
	}
	mustCall(t, nc, "kanade.schedules.put", "", `{"id":"berlin","job_id":"echo","cron":"0 9 * * *","tz":"Europe/Berlin","target":{"groups":["desk","desk"]}}`)
	mustCall(t, nc, "kanade.schedules.put", "", `{"id":"often","job_id":"echo","cron":"@every 10m","enabled":false}`)

	var list []map[string]any
	json.Unmarshal([]byte(mustCall(t, nc, "kanade.schedules.list", "", "")), &list)
	if len(list) != 3 {
		t.Fatalf("list: %v", list)
	}
	if g := list[0]["target"].(map[string]any)["groups"].([]any); len(g) != 1 {
		t.Errorf("target groups not de-duplicated: %v", g)
	}

	var pv PreviewReply
	json.Unmarshal([]byte(mustCall(t, nc, "kanade.schedules.preview", "", `{"id":"berlin","count":3}`)), &pv)
	if strings.Join(pv.Fires, " ") != "2026-05-17T07:00:00+00:00 2026-05-18T07:00:00+00:00 2026-05-19T07:00:00+00:00" {
		t.Errorf("preview: %+v", pv)
	}
	if code, _ := call(t, nc, "kanade.schedules.preview", "", `{"id":"nope"}`); code != 404 {
		t.Errorf("preview unknown: %d", code)
	}

	// Upcoming: enabled only, soonest first.
	var up []Upcoming
	json.Unmarshal([]byte(mustCall(t, nc, "kanade.schedules.upcoming", "", `{"limit":10}`)), &up)
	if len(up) != 2 || up[0].ID != "hourly-inventory" || up[0].NextRun != "2026-05-16T11:00:00Z" || up[1].ID != "berlin" {
		t.Errorf("upcoming: %+v", up)
	}
	mustCall(t, nc, "kanade.schedules.enable", "", `{"id":"often"}`)
	json.Unmarshal([]byte(mustCall(t, nc, "kanade.schedules.upcoming", "", `{"limit":1}`)), &up)
	if len(up) != 1 || up[0].ID != "often" || up[0].NextRun != "2026-05-16T10:20:00Z" {
		t.Errorf("upcoming after enable: %+v", up)
	}
	// enable and disable answer 204 with no body, as upstream's do.
	if out := mustCall(t, nc, "kanade.schedules.disable", "", `{"id":"often"}`); out != "" {
		t.Errorf("disable reply %q, want none (204)", out)
	}
	if out := mustCall(t, nc, "kanade.schedules.get", "", `{"id":"often"}`); !strings.Contains(out, `"enabled":false`) {
		t.Errorf("after disable: %s", out)
	}
	for _, op := range []string{"enable", "disable"} {
		if code, _ := call(t, nc, "kanade.schedules."+op, "", `{"id":"nope"}`); code != 404 {
			t.Errorf("%s unknown: %d", op, code)
		}
	}
	if code, out := call(t, nc, "kanade.schedules.delete", "", `{"id":"nope"}`); code != 200 || out != "" {
		t.Errorf("delete unknown: %d %q, want an empty success (204)", code, out)
	}
	if code, out := call(t, nc, "kanade.schedules.delete", "", `{"id":"often"}`); code != 200 || out != "" {
		t.Errorf("delete: %d %q, want an empty success (204)", code, out)
	}
	if code, _ := call(t, nc, "kanade.schedules.get", "", `{"id":"often"}`); code != 404 {
		t.Errorf("get deleted: %d", code)
	}
	if _, err := catalogOf(t, n).Schedules.History(context.Background(), "nope"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("delete of an unknown schedule wrote to the bucket: %v", err)
	}
	if code, msg := call(t, nc, "kanade.schedules.get", "", `{"id":"berlin","bogus":1}`); code != 200 || !strings.Contains(msg, "berlin") {
		t.Errorf("unknown parameter not ignored: %d %s", code, msg)
	}
}

// A body forwarded verbatim (a YAML manifest, a JSON exec target) comes with
// the path parameters as Kanade-Param-<name> headers, which win.
func TestParamsFromHeaders(t *testing.T) {
	var p struct {
		JobID string `json:"job_id"`
	}
	r := api.Request{Data: []byte("id: x\n"), Header: micro.Headers{"Kanade-Param-job_id": []string{"inv"}}}
	if err := params(r, &p); err != nil || p.JobID != "inv" {
		t.Errorf("params from headers: %+v %v", p, err)
	}
	r = api.Request{Data: []byte(`{"job_id":"a"}`)}
	if err := params(r, &p); err != nil || p.JobID != "a" {
		t.Errorf("params from JSON: %+v %v", p, err)
	}
	r = api.Request{Data: []byte(`{"job_id":"a","job":"b"}`), Header: micro.Headers{"Kanade-Param-job_id": []string{"path"}}}
	if err := params(r, &p); err != nil || p.JobID != "path" {
		t.Errorf("params from a JSON body and headers: %+v %v", p, err)
	}
}
