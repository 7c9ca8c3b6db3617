package projector

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/wire"
)

// resultsRetry is what the RESULTS stream waits for, nil when nothing.
func resultsRetry(p *Projector) *ObjectRetry {
	for _, s := range p.streams {
		if s.name == wire.StreamResults {
			return s.retrying.Load()
		}
	}
	return nil
}

// TestObjectRetryCompletes: a result whose object is not complete yet
// (its meta, which the object store writes last, is not there) is
// delivered again after a backoff and projected with the whole output
// once the object is complete. What came before it in the batch is
// committed meanwhile, what came after it waits: the order holds.
func TestObjectRetryCompletes(t *testing.T) {
	e := newEnv(t, Options{NoService: true, ObjectDeadline: time.Second, ObjectAttempts: 5, ObjectBackoff: 300 * time.Millisecond})
	ctx := context.Background()
	e.result(wire.ExecResult{ResultID: "r0", RequestID: "q0", PCID: "PC1", Stdout: "before", FinishedAt: t0})
	seq := e.result(wire.ExecResult{ResultID: "r1", RequestID: "q1", PCID: "PC1", Stdout: "inline",
		StdoutObject: ptr("late/stdout"), FinishedAt: t0})
	e.result(wire.ExecResult{ResultID: "r2", RequestID: "q2", PCID: "PC1", Stdout: "after", FinishedAt: t0})

	waitFor(t, "a retry of the result", func() bool { r := resultsRetry(e.p); return r != nil && r.Seq == seq })
	if n := count(t, e.n.DB, `SELECT count(*) FROM execution_results WHERE result_id = 'r0'`); n != 1 {
		t.Error("the result before the waited one was not committed")
	}
	if n := count(t, e.n.DB, `SELECT count(*) FROM execution_results WHERE result_id IN ('r1', 'r2')`); n != 0 {
		t.Error("the waited result, or the one after it, was projected before the object was read")
	}
	st, err := e.p.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ss := range st.Streams {
		if ss.Stream == wire.StreamResults && (ss.ObjectRetry == nil || !strings.Contains(ss.ObjectRetry.Reason, "not found")) {
			t.Errorf("status of RESULTS: object_retry %+v, want the waited result", ss.ObjectRetry)
		}
	}

	obs, err := e.js.ObjectStore(ctx, wire.ObjectStoreOutput)
	if err != nil {
		t.Fatal(err)
	}
	out := bytes.Repeat([]byte("a late output line\n"), 20000)
	if _, err := obs.PutBytes(ctx, "late/stdout", out); err != nil {
		t.Fatal(err)
	}
	e.settle(e.p)
	if r := resultRow(t, e.n.DB, "r1"); r["stdout"] != string(out) {
		t.Errorf("stdout of %d bytes (%.80q), want the object's %d", len(r["stdout"]), r["stdout"], len(out))
	}
	check(t, resultRow(t, e.n.DB, "r2"), map[string]string{"stdout": "after"})
	if n := count(t, e.n.DB, `SELECT count(*) FROM execution_results`); n != 3 {
		t.Errorf("%d rows, want 3", n)
	}
	if n := count(t, e.n.DB, `SELECT count(*) FROM rejects`); n != 0 {
		t.Errorf("%d rejects, want none", n)
	}
	if r := resultsRetry(e.p); r != nil {
		t.Errorf("still waiting for %+v", r)
	}
}

// TestObjectRetryGivesUp: an object that never comes is a note after the
// last attempt, naming the attempts, and the stream goes on.
func TestObjectRetryGivesUp(t *testing.T) {
	e := newEnv(t, Options{NoService: true, ObjectDeadline: time.Second, ObjectAttempts: 3, ObjectBackoff: 100 * time.Millisecond})
	e.result(wire.ExecResult{ResultID: "r1", RequestID: "q1", PCID: "PC1", Stdout: "inline",
		StdoutObject: ptr("never/stdout"), FinishedAt: t0})
	e.result(wire.ExecResult{ResultID: "r2", RequestID: "q2", PCID: "PC1", Stdout: "after", FinishedAt: t0})
	var attempts []int
	waitFor(t, "the result after the missing object", func() bool {
		if r := resultsRetry(e.p); r != nil && (len(attempts) == 0 || attempts[len(attempts)-1] != r.Attempts) {
			attempts = append(attempts, r.Attempts)
		}
		return count(t, e.n.DB, `SELECT count(*) FROM execution_results WHERE result_id = 'r2'`) == 1
	})
	if r := resultRow(t, e.n.DB, "r1"); r["stdout"] != "inline\n[kanade: output object result_output/never/stdout not found after 3 attempts]\n" {
		t.Errorf("stdout %q", r["stdout"])
	}
	if len(attempts) == 0 || attempts[len(attempts)-1] != 2 {
		t.Errorf("retries seen %v, want them to end at 2 (the third attempt is the last)", attempts)
	}
	if r := resultsRetry(e.p); r != nil {
		t.Errorf("still waiting for %+v", r)
	}
}

// TestObjectGoneNotedAtOnce: an object that was deleted, or that aged out
// of the store (it holds nothing as old as the result), will not come:
// the note is stored at the first attempt. The backoff of an hour would
// stall the test on any retry.
func TestObjectGoneNotedAtOnce(t *testing.T) {
	n := nodetest.Start(t)
	e := &env{t: t, n: n, js: n.JetStream(t)}
	ctx := context.Background()
	obs, err := e.js.ObjectStore(ctx, wire.ObjectStoreOutput)
	if err != nil {
		t.Fatal(err)
	}
	e.result(wire.ExecResult{ResultID: "r-old", RequestID: "q-old", PCID: "PC1", Stdout: "inline",
		StdoutObject: ptr("old/stdout"), FinishedAt: t0})
	time.Sleep(10 * time.Millisecond) // the object store's first message is newer than r-old
	if _, err := obs.PutBytes(ctx, "gone/stdout", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := obs.Delete(ctx, "gone/stdout"); err != nil {
		t.Fatal(err)
	}
	e.result(wire.ExecResult{ResultID: "r-gone", RequestID: "q-gone", PCID: "PC1", Stdout: "inline",
		StdoutObject: ptr("gone/stdout"), FinishedAt: t0})
	e.start(n.DB, Options{NoService: true, ObjectBackoff: time.Hour})
	e.settle(e.p)
	for id, want := range map[string]string{"r-old": "not found (expired", "r-gone": "not found (deleted)"} {
		if r := resultRow(t, e.n.DB, id); !strings.Contains(r["stdout"], want) {
			t.Errorf("%s: stdout %q, want a note saying %q", id, r["stdout"], want)
		}
	}
}
