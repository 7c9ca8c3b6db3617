package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// projectionTables are the tables rebuilt from the streams (agents come
// from heartbeats, which no stream keeps).
var projectionTables = []string{
	`SELECT * FROM execution_results ORDER BY result_id`,
	`SELECT * FROM executions ORDER BY exec_id`,
	`SELECT * FROM result_pc_ids ORDER BY pc_id`,
	`SELECT * FROM result_job_ids ORDER BY job_id`,
	`SELECT * FROM rejects ORDER BY stream, seq`,
	`SELECT * FROM projector_offsets ORDER BY stream`,
}

// mixedTraffic publishes executions, started events and results in a
// shuffled order, with duplicates and a poison message, while p runs.
func mixedTraffic(e *env, rng *rand.Rand) {
	type pub func()
	var pubs []pub
	for x := range 5 {
		execID := fmt.Sprintf("x%d", x)
		targets := 8
		pubs = append(pubs, func() { e.execution(mkExec(execID, targets, 60)) })
		for i := range targets {
			id := fmt.Sprintf("%s-r%d", execID, i)
			pc := fmt.Sprintf("PC%d", i)
			code := int64(rng.IntN(4))
			job := fmt.Sprintf("job-%d", x%2)
			s := mkStarted(id, execID, pc)
			s.ManifestID = &job
			r := mkResult(id, execID, pc, code)
			if code == 3 {
				r = mkSkipped(id, execID, pc, wire.ExitDeadline)
			}
			r.ManifestID = &job
			pubs = append(pubs, func() { e.started(s) })
			if i != 0 { // one run per exec stays in flight
				pubs = append(pubs, func() { e.result(r) })
			}
			if i%3 == 0 {
				pubs = append(pubs, func() { e.result(r) }, func() { e.started(s) })
			}
		}
	}
	pubs = append(pubs, func() { e.publish("results.poison", []byte("{oops")) })
	rng.Shuffle(len(pubs), func(i, j int) { pubs[i], pubs[j] = pubs[j], pubs[i] })
	for i, p := range pubs {
		p()
		if i%7 == 0 {
			time.Sleep(2 * time.Millisecond) // let batches form at different points
		}
	}
}

func TestRebuildEqualsIncremental(t *testing.T) {
	e := newEnv(t, Options{NoService: true, NodeName: "rb", Batch: 5})
	mixedTraffic(e, rand.New(rand.NewPCG(1, 2)))
	e.settle(e.p)
	// Reap the runs left in flight, then one gets its result late.
	if _, err := e.p.Reap(context.Background(), t0.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	e.result(mkResult("x0-r0", "x0", "PC0", 0))
	e.settle(e.p)
	e.p.Stop()

	// A new, empty kanade.db on the same node: the consumers are put back
	// to the start, everything is replayed.
	db2 := nodetest.OpenStore(t, filepath.Join(t.TempDir(), "kanade.db"))
	p2 := e.start(db2, Options{NoService: true, NodeName: "rb", Batch: 1000})
	e.settle(p2)
	if _, err := p2.Reap(context.Background(), t0.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, q := range projectionTables {
		a, b := query(t, e.n.DB, q), query(t, db2, q)
		if len(a) != len(b) {
			t.Errorf("%s: %d rows incremental, %d rebuilt", q, len(a), len(b))
			continue
		}
		if len(a) == 0 {
			t.Errorf("%s: empty, the test proves nothing", q)
		}
		for i := range a {
			if !equalRows(a[i], b[i]) {
				t.Errorf("%s row %d differs:\nincremental %v\nrebuilt     %v", q, i, a[i], b[i])
			}
		}
	}
	check(t, execRow(t, db2, "x0"), map[string]string{"status": "completed"})
}

// The projector of the crash test runs in a child process: the test binary
// run again with these variables set.
const (
	childEnvURL = "KANADE_PROJECTOR_CHILD_NATS"
	childEnvDB  = "KANADE_PROJECTOR_CHILD_DB"
	// childEnvVariant "base" runs the child as the projector was before
	// the rebuild work (the earlier writer pragmas, indexes kept), "keep"
	// keeps the indexes, "big" applies 5000 messages per transaction
	// (benchmarks only).
	childEnvVariant = "KANADE_PROJECTOR_CHILD_VARIANT"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(childEnvURL); url != "" {
		if err := runChild(url, os.Getenv(childEnvDB)); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild runs a projector until SIGTERM (or until it is killed).
func runChild(url, dbPath string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if path := os.Getenv("KANADE_PROJECTOR_CHILD_CPUPROFILE"); path != "" {
		// For profiling a rebuild (benchmarks only); written on SIGTERM.
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	db, err := store.Open(ctx, dbPath, store.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	variant := os.Getenv(childEnvVariant)
	// A variant "pragma:<p>;<p>..." runs writer pragmas first, for
	// side-by-side trials of settings (benchmarks only).
	if ps, ok := strings.CutPrefix(variant, "pragma:"); ok {
		for _, q := range strings.Split(ps, ";") {
			if _, err := db.W.ExecContext(ctx, "PRAGMA "+q); err != nil {
				return fmt.Errorf("PRAGMA %s: %w", q, err)
			}
		}
	}
	// "sql:<stmt>;<stmt>..." runs statements first (benchmarks only).
	if qs, ok := strings.CutPrefix(variant, "sql:"); ok {
		for _, q := range strings.Split(qs, ";") {
			if _, err := db.W.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
	}
	if variant == "base" {
		// The writer pragmas before the rebuild work, for side-by-side
		// figures (the writer has one connection, so they stick).
		for _, q := range []string{`PRAGMA cache_size=-32000`, `PRAGMA wal_autocheckpoint=1000`, `PRAGMA journal_size_limit=-1`} {
			if _, err := db.W.ExecContext(ctx, q); err != nil {
				return err
			}
		}
	}
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	o := Options{Conn: nc, DB: db, NodeName: "child", NoService: true}
	if variant == "base" || variant == "keep" {
		o.RebuildMin = -1 // keep the indexes
	}
	if variant == "big" {
		o.Batch = 5000
	}
	p, err := Start(ctx, o)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return p.Stop()
}

func startChild(t testing.TB, url, dbPath string) *exec.Cmd {
	return startChildVariant(t, url, dbPath, "")
}

func startChildVariant(t testing.TB, url, dbPath, variant string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnvURL+"="+url, childEnvDB+"="+dbPath, childEnvVariant+"="+variant)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// publishResults publishes n results of execs of perExec targets each, with
// their execution records, asynchronously; it returns the exec count.
func publishResults(t testing.TB, js jetstream.JetStream, n, perExec, stdoutBytes int) int {
	return publishResultsWith(t, js, n, perExec, stdoutBytes, func(i int) string { return fmt.Sprintf("%08d-r", i) })
}

// publishResultsWith names result i with id(i).
func publishResultsWith(t testing.TB, js jetstream.JetStream, n, perExec, stdoutBytes int, id func(int) string) int {
	t.Helper()
	ctx := context.Background()
	execs := (n + perExec - 1) / perExec
	for x := range execs {
		rec := mkExec(fmt.Sprintf("x%d", x), min(perExec, n-x*perExec), 60)
		b, _ := json.Marshal(rec)
		if _, err := js.Publish(ctx, "executions."+rec.ExecID, b); err != nil {
			t.Fatal(err)
		}
	}
	out := make([]byte, stdoutBytes)
	for i := range out {
		out[i] = 'a' + byte(i%26)
	}
	for i := range n {
		r := genResult(i, perExec, out, id)
		b, _ := json.Marshal(r)
		if _, err := js.PublishAsync(wire.Results(r.RequestID), b); err != nil {
			t.Fatal(err)
		}
		if i%2000 == 1999 {
			// A bounded window: a loaded machine would stall the async
			// publisher otherwise.
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(5 * time.Minute):
				t.Fatal("publish did not complete")
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		t.Fatal("publish did not complete")
	}
	return execs
}

// genResult is the i-th result of publishResults: every fifth fails.
func genResult(i, perExec int, stdout []byte, id func(int) string) wire.ExecResult {
	x := i / perExec
	r := mkResult(id(i), fmt.Sprintf("x%d", x), fmt.Sprintf("PC%04d", i%perExec), int64(i%5/4))
	r.Stdout = string(stdout)
	r.ManifestID = ptr(fmt.Sprintf("job-%d", x%20))
	return r
}

func offsetOf(t testing.TB, db *store.DB, stream string) uint64 {
	var seq uint64
	db.R.QueryRow(`SELECT last_seq FROM projector_offsets WHERE stream = ?`, stream).Scan(&seq)
	return seq
}

// A projector killed with SIGKILL in the middle of 100,000 results, and
// restarted, ends with exactly the rows and counters of the stream. The
// backlog is above DefaultRebuildMin, so the kills land in a rebuild
// without the secondary indexes: the last run must create them again,
// exactly as the schema defines them.
func TestCrashMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 100,000 results")
	}
	const total, perExec = 100_000, 10_000
	n := nodetest.Start(t)
	js := n.JetStream(t)
	execs := publishResults(t, js, total, perExec, 64)
	dbPath := filepath.Join(t.TempDir(), "child.db")
	db := nodetest.OpenStore(t, dbPath)

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	kills := 0
	for _, killAt := range []uint64{uint64(20_000 + rng.IntN(20_000)), uint64(60_000 + rng.IntN(20_000))} {
		cmd := startChild(t, n.URL, dbPath)
		waitFor(t, "rows "+strconv.Itoa(int(killAt)), func() bool { return offsetOf(t, db, wire.StreamResults) >= killAt })
		// Let it get into the middle of the next batch.
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		kills++
		t.Logf("killed at offset %d", offsetOf(t, db, wire.StreamResults))
		if got := count(t, db, `SELECT count(*) FROM projector_rebuild`); got == 0 {
			t.Errorf("killed mid-rebuild at %d with no dropped index recorded", offsetOf(t, db, wire.StreamResults))
		}
	}
	startChild(t, n.URL, dbPath)
	waitFor(t, "all results", func() bool { return offsetOf(t, db, wire.StreamResults) >= total })
	waitFor(t, "indexes recreated", func() bool { return count(t, db, `SELECT count(*) FROM projector_rebuild`) == 0 })
	fresh := nodetest.OpenStore(t, filepath.Join(t.TempDir(), "fresh.db"))
	const schemaQ = `SELECT type, name, tbl_name, COALESCE(sql, '') AS sql FROM sqlite_master ORDER BY type, name`
	want, got := query(t, fresh, schemaQ), query(t, db, schemaQ)
	if len(want) != len(got) {
		t.Errorf("schema after the rebuild has %d entries, want %d:\n%v\n%v", len(got), len(want), got, want)
	} else {
		for i := range want {
			if !equalRows(want[i], got[i]) {
				t.Errorf("schema entry %d after the rebuild: %v, want %v", i, got[i], want[i])
			}
		}
	}
	if got := count(t, db, `SELECT count(*) FROM execution_results`); got != total {
		t.Errorf("%d rows after %d kills, want %d", got, kills, total)
	}
	rows := query(t, db, `SELECT exec_id, success_count, failure_count, status, target_count FROM executions`)
	if len(rows) != execs {
		t.Fatalf("%d executions, want %d", len(rows), execs)
	}
	for _, r := range rows {
		// Every fifth result fails (i%5/4), in every exec of 10,000.
		if r["success_count"] != "8000" || r["failure_count"] != "2000" || r["status"] != "completed" {
			t.Errorf("execution %v", r)
		}
	}
	if got := count(t, db, `SELECT count(*) FROM result_pc_ids`); got != perExec {
		t.Errorf("%d distinct pc_ids, want %d", got, perExec)
	}
	if got := count(t, db, `SELECT count(*) FROM result_exec_ids`); got != execs {
		t.Errorf("%d distinct exec ids, want %d", got, execs)
	}
}

// A replay into an empty projection with a backlog of at least RebuildMin
// drops the secondary indexes and is not caught up until they are back,
// exactly as the schema defines them; a projection that already holds
// rows keeps its indexes whatever the backlog.
func TestRebuildWithoutIndexes(t *testing.T) {
	n := nodetest.Start(t)
	e := &env{t: t, n: n, js: n.JetStream(t)}
	for i := range 500 {
		e.result(mkResult("r"+itoa(i), "x"+itoa(i%7), "PC1", 0))
	}
	p := e.start(n.DB, Options{NoService: true, Batch: 50, RebuildMin: 100})
	if !p.rebuild.active() {
		t.Fatal("no rebuild for 500 results into an empty projection with RebuildMin 100")
	}
	if got := count(t, n.DB, `SELECT count(*) FROM projector_rebuild`); got == 0 {
		t.Error("rebuild without a dropped index recorded")
	}
	if got := count(t, n.DB, `SELECT count(*) FROM sqlite_master WHERE name = 'idx_results_exec'`); got != 1 {
		t.Error("idx_results_exec, which the write path reads, was dropped")
	}
	e.settle(p)
	waitFor(t, "caught up", func() bool { return p.CaughtUp(0) })
	if p.rebuild.active() || count(t, n.DB, `SELECT count(*) FROM projector_rebuild`) != 0 {
		t.Error("caught up while the rebuild's indexes are missing")
	}
	fresh := nodetest.OpenStore(t, filepath.Join(t.TempDir(), "fresh.db"))
	const q = `SELECT type, name, COALESCE(sql, '') AS sql FROM sqlite_master
		WHERE type IN ('index', 'trigger') ORDER BY type, name`
	want, got := query(t, fresh, q), query(t, n.DB, q)
	if len(want) != len(got) {
		t.Fatalf("indexes and triggers after the rebuild %v, want %v", got, want)
	}
	for i := range want {
		if !equalRows(want[i], got[i]) {
			t.Errorf("%v after the rebuild, want %v", got[i], want[i])
		}
	}
	// The exec-id triggers were dropped for the replay: their table is
	// filled at the end, and they work again afterwards.
	if got := count(t, n.DB, `SELECT count(*) FROM result_exec_ids`); got != 7 {
		t.Errorf("%d exec ids after the rebuild, want 7", got)
	}
	if got := count(t, n.DB, `SELECT count(*) FROM execution_results`); got != 500 {
		t.Errorf("%d rows, want 500", got)
	}

	// Rows already there (a new node name, so its consumers start over):
	// no drop.
	p.Stop()
	for i := range 500 {
		e.result(mkResult("s"+itoa(i), "", "PC2", 0))
	}
	n.DB.W.Exec(`DELETE FROM projector_offsets`)
	p2 := e.start(n.DB, Options{NoService: true, Batch: 50, RebuildMin: 100, NodeName: "again"})
	if p2.rebuild.active() {
		t.Error("indexes dropped on a projection that holds rows")
	}
	e.settle(p2)
	waitFor(t, "caught up", func() bool { return p2.CaughtUp(0) })
	if got := count(t, n.DB, `SELECT count(*) FROM execution_results`); got != 1000 {
		t.Errorf("%d rows, want 1000", got)
	}
	e.result(mkResult("late", "x-late", "PC3", 0))
	e.settle(p2)
	if got := count(t, n.DB, `SELECT count(*) FROM result_exec_ids WHERE exec_id = 'x-late'`); got != 1 {
		t.Error("the exec-id trigger does not work after the rebuild")
	}
}
