package results

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/wire"
)

// fakeAgent answers job.tail.{pc} like an agent: reply decides the answer
// to each request (nil = stay silent). It counts the requests it saw.
func fakeAgent(t *testing.T, e *env, pc string, reply func(wire.JobTailRequest) []byte) *atomic.Int64 {
	t.Helper()
	nc := e.n.Conn(t)
	var seen atomic.Int64
	_, err := nc.Subscribe(wire.JobTail(pc), func(m *nats.Msg) {
		seen.Add(1)
		var req wire.JobTailRequest
		if err := json.Unmarshal(m.Data, &req); err != nil {
			t.Errorf("agent got a bad request %q: %v", m.Data, err)
			return
		}
		if b := reply(req); b != nil {
			m.Respond(b)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &seen
}

func (e *env) tail(t *testing.T, id string) string {
	t.Helper()
	code, body := e.call(t, "kanade.results.tail", map[string]string{"result_id": id})
	if code != "" {
		t.Fatalf("tail %s: %s %s", id, code, body)
	}
	return string(body)
}

const waitingJSON = `{"running":true,"live":false,"stdout":"","stderr":"","stdout_truncated":false,"stderr_truncated":false,"exit_code":null}`

func TestTail(t *testing.T) {
	e := start(t, Options{TailTimeout: 300 * time.Millisecond})
	insert(t, e.n.DB,
		rec{id: "live", pc: "PC1", started: t0},
		rec{id: "gone", pc: "PC1", started: t0},
		rec{id: "done", pc: "PC1", exit: code(4), stdout: "all of it\n", stderr: "oops", started: t0, finished: t0.Add(time.Second)},
		rec{id: "silent", pc: "PC2", started: t0},
		rec{id: "garbled", pc: "PC3", started: t0},
		rec{id: "nobody", pc: "PC4", started: t0},
	)
	pc1 := fakeAgent(t, e, "PC1", func(r wire.JobTailRequest) []byte {
		if r.ResultID != "live" {
			return []byte(`{"found":false}`)
		}
		b, _ := json.Marshal(wire.JobTailReply{Found: true, Running: true, Stdout: "progress 50%\n", StderrTruncated: true})
		return b
	})
	pc2 := fakeAgent(t, e, "PC2", func(wire.JobTailRequest) []byte { return nil })
	fakeAgent(t, e, "PC3", func(wire.JobTailRequest) []byte { return []byte("not json") })

	if got, want := e.tail(t, "live"), `{"running":true,"live":true,"stdout":"progress 50%\n","stderr":"","stdout_truncated":false,"stderr_truncated":true,"exit_code":null}`; got != want {
		t.Errorf("live:\n got %s\nwant %s", got, want)
	}
	if pc1.Load() != 1 {
		t.Fatalf("agent saw %d requests", pc1.Load())
	}
	// Finished: the stored output, and no request to the agent.
	if got, want := e.tail(t, "done"), `{"running":false,"live":false,"stdout":"all of it\n","stderr":"oops","stdout_truncated":false,"stderr_truncated":false,"exit_code":4}`; got != want {
		t.Errorf("finished:\n got %s\nwant %s", got, want)
	}
	if pc1.Load() != 1 {
		t.Errorf("a finished row asked the agent (%d requests)", pc1.Load())
	}
	for _, id := range []string{"gone", "silent", "garbled", "nobody"} {
		if got := e.tail(t, id); got != waitingJSON {
			t.Errorf("%s: got %s, want waiting", id, got)
		}
	}
	if pc2.Load() != 1 {
		t.Errorf("silent agent saw %d requests", pc2.Load())
	}
	if c, b := e.call(t, "kanade.results.tail", map[string]string{"result_id": "unknown"}); c != "404" || string(b) != "result unknown not found" {
		t.Errorf("unknown: %s %s", c, b)
	}
	if c, b := e.call(t, "kanade.results.tail", `{"result_id":1}`); c != "400" {
		t.Errorf("bad id type: %s %s", c, b)
	}

	// Direct calls, same answers.
	r, err := Tail(context.Background(), e.n.DB, e.nc, "live", time.Second)
	if err != nil || !r.Live || r.Stdout != "progress 50%\n" {
		t.Errorf("direct live: %+v %v", r, err)
	}
	r, err = Tail(context.Background(), e.n.DB, e.nc, "nobody", time.Second)
	if err != nil || !r.Running || r.Live || r.why == "" {
		t.Errorf("direct no responders: %+v %v", r, err)
	}
}
