package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/store"
)

// The completions cache against the projection it mirrors: a job read
// whole, then caught up with inserted rows and rows finished in place,
// read again after fullEvery, and started over when the table is rebuilt.
func TestCompletionsCache(t *testing.T) {
	n := nodetest.Start(t)
	db := n.DB
	ctx := context.Background()
	base := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	insert := func(id, pc string, code any, finished time.Time) {
		t.Helper()
		var fin any
		if !finished.IsZero() {
			fin = store.FormatTime(finished)
		}
		if _, err := db.W.Exec(`INSERT INTO execution_results (result_id, request_id, exec_id, pc_id, exit_code,
				started_at, finished_at, recorded_at, job_id, version) VALUES (?, 'r', 'e', ?, ?, ?, ?, ?, 'job', '1')`,
			id, pc, code, store.FormatTime(base), fin, store.FormatTime(base)); err != nil {
			t.Fatal(err)
		}
	}
	get := func(c *Completions, now time.Time, pc string) pcRuns {
		t.Helper()
		r, err := c.Runs(ctx, "job", "", now)
		if err != nil {
			t.Fatal(err)
		}
		return r.Get(pc)
	}
	insert("a1", "PC-A", 0, base.Add(time.Minute))
	insert("b1", "PC-B", nil, time.Time{}) // in flight
	c := newCompletions(db, 0)
	if r := get(c, base.Add(2*time.Minute), "PC-A"); !r.lastOK.Equal(base.Add(time.Minute)) || r.running {
		t.Errorf("PC-A %+v", r)
	}
	if r := get(c, base.Add(2*time.Minute), "PC-B"); !r.running || !r.lastDone.IsZero() {
		t.Errorf("PC-B %+v", r)
	}
	// New rows and a run finished in place show at the next poll.
	insert("c1", "PC-C", 2, base.Add(3*time.Minute))
	if _, err := db.W.Exec(`UPDATE execution_results SET exit_code = 1, finished_at = ? WHERE result_id = 'b1'`, store.FormatTime(base.Add(3*time.Minute))); err != nil {
		t.Fatal(err)
	}
	now := base.Add(4 * time.Minute)
	if r := get(c, now, "PC-C"); !r.lastDone.Equal(base.Add(3*time.Minute)) || !r.lastOK.IsZero() {
		t.Errorf("PC-C %+v", r)
	}
	if r := get(c, now, "PC-B"); r.running || !r.lastDone.Equal(base.Add(3*time.Minute)) || !r.lastOK.IsZero() {
		t.Errorf("PC-B finished %+v", r)
	}
	// Same poll instant: no catch-up (one read per poll minute); a reader
	// outside the polls (Current) catches up anyway.
	insert("a2", "PC-D", 0, base.Add(4*time.Minute))
	if r := get(c, now, "PC-D"); !r.lastOK.IsZero() {
		t.Errorf("PC-D read twice in one poll: %+v", r)
	}
	if r, _ := c.Current(ctx, "job", now); !r.Get("PC-D").lastOK.Equal(base.Add(4 * time.Minute)) {
		t.Errorf("Current missed PC-D: %+v", r.Get("PC-D"))
	}
	// Retention deletes a row: seen after the job's next full read.
	if _, err := db.W.Exec(`DELETE FROM execution_results WHERE result_id = 'a1'`); err != nil {
		t.Fatal(err)
	}
	if r := get(c, base.Add(5*time.Minute), "PC-A"); r.lastOK.IsZero() {
		t.Error("PC-A forgotten before the full read")
	}
	if r := get(c, base.Add(5*time.Minute+fullEvery+staggerOf("job")), "PC-A"); !r.lastOK.IsZero() {
		t.Errorf("PC-A still done after the full read: %+v", r)
	}
	// A rebuild (rowids start over) is read afresh.
	if _, err := db.W.Exec(`DELETE FROM execution_results`); err != nil {
		t.Fatal(err)
	}
	insert("z1", "PC-Z", 0, base.Add(6*time.Minute))
	later := base.Add(7*time.Minute + 2*fullEvery)
	if r := get(c, later, "PC-Z"); !r.lastOK.Equal(base.Add(6 * time.Minute)) {
		t.Errorf("PC-Z after the rebuild %+v", r)
	}
	if r := get(c, later, "PC-C"); !r.lastDone.IsZero() {
		t.Errorf("PC-C survived the rebuild %+v", r)
	}
}

// A reaped run's real result lands later in the same row (same rowid): the
// cache must see it at the next poll, not at the job's hourly full read,
// or a per_pc once schedule dispatches again to a PC that succeeded.
func TestCompletionsSeeAResultAfterItsReap(t *testing.T) {
	n := nodetest.Start(t)
	db := n.DB
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	insert := func(id, pc string, code int, finished time.Time) {
		t.Helper()
		if _, err := db.W.Exec(`INSERT INTO execution_results (result_id, request_id, exec_id, pc_id, exit_code,
				started_at, finished_at, recorded_at, job_id, version) VALUES (?, 'r', 'e', ?, ?, ?, ?, ?, 'job', '1')`,
			id, pc, code, store.FormatTime(finished), store.FormatTime(finished), store.FormatTime(finished)); err != nil {
			t.Fatal(err)
		}
	}
	answer := func(id string, at time.Time) {
		t.Helper()
		if _, err := db.W.Exec(`UPDATE execution_results SET exit_code = 0, finished_at = ? WHERE result_id = ?`, store.FormatTime(at), id); err != nil {
			t.Fatal(err)
		}
	}
	get := func(c *Completions, at time.Time, pc string) pcRuns {
		t.Helper()
		r, err := c.Runs(ctx, "job", "", at)
		if err != nil {
			t.Fatal(err)
		}
		return r.Get(pc)
	}
	insert("k1", "PC-K", -1, now.Add(-time.Minute)) // reaped before the job's first read
	c := newCompletions(db, 0)
	if r := get(c, now, "PC-K"); !r.lastOK.IsZero() {
		t.Fatalf("reaped row counted as a success: %+v", r)
	}
	insert("k2", "PC-L", -1, now) // reaped after it, seen by the catch-up
	if r := get(c, now.Add(time.Minute), "PC-L"); !r.lastOK.IsZero() {
		t.Fatalf("reaped row counted as a success: %+v", r)
	}
	answer("k1", now.Add(time.Minute))
	answer("k2", now.Add(time.Minute))
	for _, pc := range []string{"PC-K", "PC-L"} {
		if r := get(c, now.Add(2*time.Minute), pc); !r.lastOK.Equal(now.Add(time.Minute)) {
			t.Errorf("%s's late success not seen: %+v", pc, r)
		}
	}
}

// The catch-up reads its rows a batch at a time: with two rows a query it
// still sees every new row, every run finished in place and every late
// result of a reaped run, across several batches of each.
func TestCompletionsCatchUpInBatches(t *testing.T) {
	n := nodetest.Start(t)
	db := n.DB
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	insert := func(id, pc string, code any, finished time.Time) {
		t.Helper()
		var fin any
		if !finished.IsZero() {
			fin = store.FormatTime(finished)
		}
		if _, err := db.W.Exec(`INSERT INTO execution_results (result_id, request_id, exec_id, pc_id, exit_code,
				started_at, finished_at, recorded_at, job_id, version) VALUES (?, 'r', 'e', ?, ?, ?, ?, ?, ?, '1')`,
			id, pc, code, store.FormatTime(now), fin, store.FormatTime(now), "job"); err != nil {
			t.Fatal(err)
		}
	}
	finish := func(id string, code int, at time.Time) {
		t.Helper()
		if _, err := db.W.Exec(`UPDATE execution_results SET exit_code = ?, finished_at = ? WHERE result_id = ?`, code, store.FormatTime(at), id); err != nil {
			t.Fatal(err)
		}
	}
	c := newCompletions(db, 2)
	runs := func(at time.Time) *JobRuns {
		t.Helper()
		r, err := c.Runs(ctx, "job", "", at)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Before the first read: three in flight, three reaped.
	for _, pc := range []string{"A", "B", "C"} {
		insert("run-"+pc, "PC-"+pc, nil, time.Time{})
		insert("reap-"+pc, "PC-R"+pc, -1, now.Add(-time.Minute))
	}
	runs(now)
	// Then: five new rows (one in flight, one reaped), the three runs
	// finished, the three reaped ones answered.
	at := now.Add(time.Minute)
	for _, pc := range []string{"D", "E", "F"} {
		insert("new-"+pc, "PC-"+pc, 0, at)
	}
	insert("new-G", "PC-G", nil, time.Time{})
	insert("new-H", "PC-H", -1, at)
	for _, pc := range []string{"A", "B", "C"} {
		finish("run-"+pc, 0, at)
		finish("reap-"+pc, 0, at)
	}
	r := runs(now.Add(time.Minute))
	for _, pc := range []string{"A", "B", "C", "RA", "RB", "RC", "D", "E", "F"} {
		if got := r.Get("PC-" + pc); !got.lastOK.Equal(at) || got.running {
			t.Errorf("PC-%s %+v, want done at %v", pc, got, at)
		}
	}
	if got := r.Get("PC-G"); !got.running {
		t.Errorf("PC-G %+v, want in flight", got)
	}
	if got := r.Get("PC-H"); !got.lastOK.IsZero() || !got.lastDone.Equal(at) {
		t.Errorf("PC-H %+v, want reaped", got)
	}
	// The new rows joined the sets read again.
	later := now.Add(2 * time.Minute)
	finish("new-G", 0, later)
	finish("new-H", 0, later)
	r = runs(now.Add(2 * time.Minute))
	for _, pc := range []string{"G", "H"} {
		if got := r.Get("PC-" + pc); !got.lastOK.Equal(later) || got.running {
			t.Errorf("PC-%s %+v, want done at %v", pc, got, later)
		}
	}
}
