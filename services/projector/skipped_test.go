package projector

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kanade-go/kanade/wire"
)

func mkSkipped(id, execID, pc string, code int64) wire.ExecResult {
	r := mkResult(id, execID, pc, code)
	r.Skipped = true
	return r
}

// A result without exit_code (or with null) is poison: kept in rejects,
// never projected as a success nor counted.
func TestResultWithoutExitCodeIsRejected(t *testing.T) {
	e := newEnv(t, Options{NoService: true})
	e.execution(mkExec("x1", 2, 60))
	e.started(mkStarted("r1", "x1", "PC1"))
	bad := []string{
		`{"result_id":"r1","request_id":"req-x1","exec_id":"x1","pc_id":"PC1","stdout":"ok","finished_at":"2026-05-16T00:00:05Z"}`,
		`{"result_id":"r2","request_id":"req-x1","exec_id":"x1","pc_id":"PC2","exit_code":null,"finished_at":"2026-05-16T00:00:05Z"}`,
	}
	for _, b := range bad {
		e.publish(wire.Results("req-x1"), []byte(b))
	}
	e.settle(e.p)
	db := e.n.DB
	check(t, resultRow(t, db, "r1"), map[string]string{"exit_code": "NULL", "finished_at": "NULL"})
	if n := count(t, db, `SELECT count(*) FROM execution_results`); n != 1 {
		t.Errorf("%d rows, want only r1's in-flight row", n)
	}
	check(t, execRow(t, db, "x1"), map[string]string{"status": "running", "success_count": "0", "failure_count": "0"})
	rej := query(t, db, `SELECT * FROM rejects WHERE stream = ? ORDER BY seq`, wire.StreamResults)
	if len(rej) != len(bad) {
		t.Fatalf("%d rejects, want %d", len(rej), len(bad))
	}
	for i, r := range rej {
		if !strings.Contains(r["error"], "missing exit_code") || r["payload"] != bad[i] {
			t.Errorf("reject %d: error %q payload %q", i, r["error"], r["payload"])
		}
	}
}

// Skipped results count neither as success nor failure, but toward
// completion; the reaper's failure and a late skipped result correct each
// other exactly; redeliveries change nothing.
func TestSkippedResults(t *testing.T) {
	e := newEnv(t, Options{NoService: true})
	db := e.n.DB
	e.execution(mkExec("x1", 5, 600))
	e.result(mkResult("r1", "x1", "PC1", 0))
	e.result(mkResult("r2", "x1", "PC2", wire.ExitRefused)) // refused is a failure
	e.result(mkSkipped("r3", "x1", "PC3", wire.ExitDeadline))
	e.result(mkSkipped("r3", "x1", "PC3", wire.ExitDeadline)) // redelivered
	e.result(mkSkipped("r5", "x1", "PC5", wire.ExitVersionPin))
	e.started(mkStarted("r5", "x1", "PC5")) // after its result
	e.started(mkStarted("r4", "x1", "PC4"))
	e.settle(e.p)
	check(t, resultRow(t, db, "r2"), map[string]string{"exit_code": "123", "skipped": "0"})
	check(t, resultRow(t, db, "r3"), map[string]string{"exit_code": "125", "skipped": "1"})
	check(t, resultRow(t, db, "r5"), map[string]string{"exit_code": "124", "skipped": "1", "version": "1.2.3"})
	check(t, execRow(t, db, "x1"), map[string]string{
		"status": "running", "success_count": "1", "failure_count": "1", "skipped_count": "2",
	})

	// r4 never answers: the reaper's failure completes the execution.
	deadline := t0.Add(600*time.Second + 300*time.Second)
	if n, err := e.p.Reap(context.Background(), deadline.Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("reap: %d rows, %v; want 1", n, err)
	}
	check(t, resultRow(t, db, "r4"), map[string]string{"exit_code": "-1", "reaped": "1", "skipped": "0"})
	check(t, execRow(t, db, "x1"), map[string]string{
		"status": "completed", "success_count": "1", "failure_count": "2", "skipped_count": "2",
	})

	// Its late result says it was skipped (revoked): the reaper's failure
	// becomes a skip, once, even delivered twice.
	e.result(mkSkipped("r4", "x1", "PC4", wire.ExitRevoked))
	e.result(mkSkipped("r4", "x1", "PC4", wire.ExitRevoked))
	e.settle(e.p)
	check(t, resultRow(t, db, "r4"), map[string]string{"exit_code": "126", "reaped": "0", "skipped": "1"})
	check(t, execRow(t, db, "x1"), map[string]string{
		"status": "completed", "success_count": "1", "failure_count": "1", "skipped_count": "3",
	})
}

// Skipped results alone complete an execution: an offline agent replaying
// a Command past its deadline does not count as a failure.
func TestSkippedResultsComplete(t *testing.T) {
	e := newEnv(t, Options{NoService: true})
	e.execution(mkExec("x1", 2, 60))
	e.result(mkSkipped("r1", "x1", "PC1", wire.ExitDeadline))
	e.settle(e.p)
	check(t, execRow(t, e.n.DB, "x1"), map[string]string{"status": "running", "skipped_count": "1", "failure_count": "0"})
	e.result(mkSkipped("r2", "x1", "PC2", wire.ExitStaleness))
	e.settle(e.p)
	check(t, execRow(t, e.n.DB, "x1"), map[string]string{
		"status": "completed", "success_count": "0", "failure_count": "0", "skipped_count": "2",
	})
}
