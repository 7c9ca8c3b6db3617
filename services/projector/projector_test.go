package projector

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

func (e *env) pubTime(stream string, seq uint64) string {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), stream)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := s.GetMsg(context.Background(), seq)
	if err != nil {
		e.t.Fatal(err)
	}
	return ft(m.Time)
}

func mkResult(id, execID, pc string, code int64) wire.ExecResult {
	r := wire.ExecResult{
		ResultID: id, RequestID: "req-" + execID, PCID: pc, ExitCode: code,
		Stdout: "out " + id, Stderr: "err " + id, StartedAt: t0, FinishedAt: t0.Add(5 * time.Second),
		ManifestID: ptr("job-a"),
	}
	if execID != "" {
		r.ExecID = ptr(execID)
	}
	return r
}

func mkStarted(id, execID, pc string) wire.EventStarted {
	return wire.EventStarted{
		ResultID: id, RequestID: "req-" + execID, ExecID: execID, PCID: pc, StartedAt: t0,
		ManifestID: ptr("job-a"), Version: ptr("1.2.3"),
	}
}

func mkExec(id string, targets int, timeout int64) streams.ExecutionRecord {
	return streams.ExecutionRecord{
		ExecID: id, RequestID: "req-" + id, JobID: "job-a", Version: "1.2.3", InitiatedBy: "api",
		InitiatedAt: t0.Add(-time.Second), TargetCount: targets, Target: json.RawMessage(`{"all":true}`),
		TimeoutSecs: timeout,
	}
}

func TestStartedThenResult(t *testing.T) {
	e := newEnv(t, Options{NoService: true})
	e.execution(mkExec("x1", 1, 60))
	sseq := e.started(mkStarted("r1", "x1", "PC1"))
	e.settle(e.p)
	db := e.n.DB
	check(t, resultRow(t, db, "r1"), map[string]string{
		"exit_code": "NULL", "finished_at": "NULL", "version": "1.2.3", "started_at": ft(t0),
		"exec_id": "x1", "pc_id": "PC1", "job_id": "job-a", "recorded_at": e.pubTime(wire.StreamEvents, sseq),
		"reaped": "0",
	})
	check(t, execRow(t, db, "x1"), map[string]string{"status": "running", "success_count": "0", "failure_count": "0"})

	r := mkResult("r1", "x1", "PC1", 0)
	r.StartedAt = t0.Add(time.Second) // must not overwrite the started row's start
	e.result(r)
	e.settle(e.p)
	check(t, resultRow(t, db, "r1"), map[string]string{
		"exit_code": "0", "finished_at": ft(t0.Add(5 * time.Second)), "version": "1.2.3", "started_at": ft(t0),
		"stdout": "out r1", "stderr": "err r1", "recorded_at": e.pubTime(wire.StreamEvents, sseq),
	})
	check(t, execRow(t, db, "x1"), map[string]string{"status": "completed", "success_count": "1", "failure_count": "0"})
	if n := count(t, db, `SELECT count(*) FROM result_pc_ids WHERE pc_id = 'PC1'`); n != 1 {
		t.Errorf("result_pc_ids has PC1 %d times", n)
	}
	if n := count(t, db, `SELECT count(*) FROM result_job_ids WHERE job_id = 'job-a'`); n != 1 {
		t.Errorf("result_job_ids has job-a %d times", n)
	}
}

// Every order and duplication of the two messages of a run ends in the
// same row and the same counters.
func TestOrdersAndDuplicatesConverge(t *testing.T) {
	e := newEnv(t, Options{NoService: true})
	orders := map[string]string{
		"started-result":       "SR",
		"result-started":       "RS",
		"started twice":        "SSR",
		"result twice":         "SRR",
		"result-started twice": "RSRS",
		"result first, twice":  "RRSS",
	}
	e.execution(mkExec("x1", len(orders), 60))
	first := map[string]string{} // result_id -> publish time of its first message
	i := 0
	for _, order := range orders {
		i++
		id := "r" + string(rune('a'+i))
		pc := "PC" + string(rune('a'+i))
		code := int64(i % 2) // half succeed, half fail
		for _, c := range order {
			var seq uint64
			var stream string
			if c == 'S' {
				seq, stream = e.started(mkStarted(id, "x1", pc)), wire.StreamEvents
			} else {
				seq, stream = e.result(mkResult(id, "x1", pc, code)), wire.StreamResults
			}
			if pt := e.pubTime(stream, seq); first[id] == "" || pt < first[id] {
				first[id] = pt
			}
			// Let each message apply before the next, so the order is
			// the order the projector sees.
			e.settle(e.p)
		}
	}
	db := e.n.DB
	var ref row
	for id, rec := range first {
		r := resultRow(t, db, id)
		check(t, r, map[string]string{"recorded_at": rec, "version": "1.2.3", "started_at": ft(t0), "reaped": "0"})
		r = clone(r)
		for _, k := range []string{"result_id", "pc_id", "recorded_at", "stdout", "stderr", "exit_code"} {
			delete(r, k)
		}
		if ref == nil {
			ref = r
		} else if !equalRows(ref, r) {
			t.Errorf("rows differ by order:\n%v\n%v", ref, r)
		}
	}
	success := len(orders) / 2
	check(t, execRow(t, db, "x1"), map[string]string{
		"status": "completed", "success_count": itoa(success), "failure_count": itoa(len(orders) - success),
	})
	if n := count(t, db, `SELECT count(*) FROM execution_results`); n != len(orders) {
		t.Errorf("%d rows, want %d", n, len(orders))
	}
}

// An execution record projected after its results counts them.
func TestExecutionAfterResults(t *testing.T) {
	e := newEnv(t, Options{NoService: true})
	e.result(mkResult("r1", "x1", "PC1", 0))
	e.result(mkResult("r2", "x1", "PC2", 3))
	e.result(mkSkipped("r4", "x1", "PC4", wire.ExitDeadline))
	e.started(mkStarted("r3", "x1", "PC3"))
	e.settle(e.p)
	e.execution(mkExec("x1", 4, 60))
	e.execution(mkExec("x1", 4, 60)) // republished: the row stands
	e.settle(e.p)
	check(t, execRow(t, e.n.DB, "x1"), map[string]string{"status": "running", "success_count": "1", "failure_count": "1", "skipped_count": "1"})
	e.result(mkResult("r3", "x1", "PC3", 0))
	e.settle(e.p)
	check(t, execRow(t, e.n.DB, "x1"), map[string]string{"status": "completed", "success_count": "2", "failure_count": "1", "skipped_count": "1"})

	// Only skipped results projected before the record: it completes.
	e.result(mkSkipped("s1", "x2", "PC1", wire.ExitUnsupported))
	e.result(mkSkipped("s2", "x2", "PC2", wire.ExitStaleness))
	e.settle(e.p)
	e.execution(mkExec("x2", 2, 60))
	e.settle(e.p)
	check(t, execRow(t, e.n.DB, "x2"), map[string]string{"status": "completed", "success_count": "0", "failure_count": "0", "skipped_count": "2"})
}

func TestReapedRowOverwrittenByLateResult(t *testing.T) {
	e := newEnv(t, Options{NoService: true})
	e.execution(mkExec("x1", 2, 600))
	e.started(mkStarted("r1", "x1", "PC1"))
	e.started(mkStarted("r2", "x1", "PC2")) // stays in flight: not yet due
	e.settle(e.p)
	db := e.n.DB

	// r1's deadline: start + 600 s + max(2 min, 300 s).
	deadline := t0.Add(600*time.Second + 300*time.Second)
	if n, err := e.p.Reap(context.Background(), deadline.Add(-time.Second)); err != nil || n != 0 {
		t.Fatalf("reap before the deadline: %d rows, %v", n, err)
	}
	// Make r2 start later so only r1 is due.
	if _, err := db.W.Exec(`UPDATE execution_results SET started_at = ? WHERE result_id = 'r2'`, ft(deadline)); err != nil {
		t.Fatal(err)
	}
	if n, err := e.p.Reap(context.Background(), deadline.Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("reap: %d rows, %v; want 1", n, err)
	}
	r := resultRow(t, db, "r1")
	check(t, r, map[string]string{"exit_code": "-1", "reaped": "1", "finished_at": ft(deadline)})
	if !strings.Contains(r["stderr"], "reaped") {
		t.Errorf("stderr %q has no reaper note", r["stderr"])
	}
	check(t, resultRow(t, db, "r2"), map[string]string{"exit_code": "NULL", "reaped": "0"})
	check(t, execRow(t, db, "x1"), map[string]string{"status": "running", "success_count": "0", "failure_count": "1"})

	// The real result still wins, once, even delivered twice.
	e.result(mkResult("r1", "x1", "PC1", 0))
	e.result(mkResult("r1", "x1", "PC1", 0))
	e.settle(e.p)
	check(t, resultRow(t, db, "r1"), map[string]string{
		"exit_code": "0", "reaped": "0", "stderr": "err r1", "finished_at": ft(t0.Add(5 * time.Second)),
	})
	check(t, execRow(t, db, "x1"), map[string]string{"status": "running", "success_count": "1", "failure_count": "0"})
	e.result(mkResult("r2", "x1", "PC2", 1))
	e.settle(e.p)
	check(t, execRow(t, db, "x1"), map[string]string{"status": "completed", "success_count": "1", "failure_count": "1"})
}

func TestDeadline(t *testing.T) {
	for _, c := range []struct {
		timeout int64
		want    time.Duration
	}{
		{0, 24 * time.Hour},
		{60, 60*time.Second + 2*time.Minute},
		{600, 600*time.Second + 300*time.Second},
	} {
		if got := Deadline(t0, c.timeout).Sub(t0); got != c.want {
			t.Errorf("timeout %d s: deadline after %v, want %v", c.timeout, got, c.want)
		}
	}
}

func TestObjectStoreOutput(t *testing.T) {
	e := newEnv(t, Options{NoService: true, ObjectBackoff: 50 * time.Millisecond})
	ctx := context.Background()
	obs, err := e.js.ObjectStore(ctx, wire.ObjectStoreOutput)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("line of output\n", 30000) // ~450 KiB
	if _, err := obs.PutBytes(ctx, wire.OutputObjectKey("req-x", "stdout"), []byte(big)); err != nil {
		t.Fatal(err)
	}
	r := mkResult("r1", "", "PC1", 0)
	r.RequestID = "req-x"
	r.Stdout = ""
	r.StdoutObject = ptr(wire.OutputObjectKey("req-x", "stdout"))
	r.StderrObject = ptr(wire.OutputObjectKey("req-x", "stderr")) // never uploaded
	e.result(r)
	e.settle(e.p)
	row := resultRow(t, e.n.DB, "r1")
	if row["stdout"] != big {
		t.Errorf("stdout is %d bytes, want the object's %d", len(row["stdout"]), len(big))
	}
	if !strings.HasPrefix(row["stderr"], "err r1") || !strings.Contains(row["stderr"], "not found") {
		t.Errorf("stderr %q: want the inline text and a note that the object is missing", row["stderr"])
	}
}

func TestPoisonMessagesKeptAndSkipped(t *testing.T) {
	e := newEnv(t, Options{NoService: true, MaxPayload: 64 << 10})
	bad := [][]byte{
		[]byte("not json"),
		[]byte(`{"request_id": 5, "pc_id": "PC1"}`),
		[]byte(`{"request_id": "q", "exit_code": 0}`), // no pc_id
		[]byte(`{"pc_id": "PC1", "exit_code": 0}`),    // no request_id
		[]byte(`{"request_id": "q", "pc_id": "PC1", "started_at": "yesterday"}`),
	}
	var seqs []uint64
	for _, b := range bad {
		seqs = append(seqs, e.publish("results.q", b))
	}
	huge := mkResult("rh", "", "PC1", 0)
	huge.Stdout = strings.Repeat("x", 100<<10)
	seqs = append(seqs, e.result(huge))
	e.publish(wire.Started("x1", "PC1"), []byte("{"))
	e.publish(streams.ExecutionSubject("x2"), []byte(`{"exec_id":"x2"}`)) // no job_id
	e.result(mkResult("good", "", "PC1", 0))
	e.settle(e.p)

	db := e.n.DB
	if n := count(t, db, `SELECT count(*) FROM execution_results`); n != 1 {
		t.Errorf("%d rows, want only the good one", n)
	}
	resultRow(t, db, "good")
	rej := query(t, db, `SELECT * FROM rejects WHERE stream = ? ORDER BY seq`, wire.StreamResults)
	if len(rej) != len(seqs) {
		t.Fatalf("%d RESULTS rejects, want %d", len(rej), len(seqs))
	}
	for i, r := range rej {
		if r["seq"] != itoa(int(seqs[i])) || r["error"] == "" || r["subject"] == "" {
			t.Errorf("reject %d: %v", i, r)
		}
	}
	last := rej[len(rej)-1]
	if !strings.Contains(last["error"], "exceeds") || len(last["payload"]) != rejectPrefix || last["size"] == itoa(rejectPrefix) {
		t.Errorf("oversized reject: error %q, payload %d bytes, size %s", last["error"], len(last["payload"]), last["size"])
	}
	if !bytes.Equal([]byte(rej[0]["payload"]), bad[0]) {
		t.Errorf("payload %q, want %q", rej[0]["payload"], bad[0])
	}
	for _, s := range []string{wire.StreamEvents, streams.StreamExecutions} {
		if n := count(t, db, `SELECT count(*) FROM rejects WHERE stream = ?`, s); n != 1 {
			t.Errorf("%s: %d rejects, want 1", s, n)
		}
	}
	st, err := e.p.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Streams[0].Rejects != uint64(len(seqs)) || st.Rows.Rejects != int64(len(seqs)+2) {
		t.Errorf("status counts %d RESULTS rejects and %d in all, want %d and %d",
			st.Streams[0].Rejects, st.Rows.Rejects, len(seqs), len(seqs)+2)
	}
}

func TestHeartbeats(t *testing.T) {
	e := newEnv(t, Options{NoService: true})
	nc := e.n.Conn(t)
	pub := func(hb wire.Heartbeat) {
		b, _ := json.Marshal(hb)
		if err := nc.Publish(wire.HeartbeatSubject(hb.PCID), b); err != nil {
			t.Fatal(err)
		}
	}
	pub(wire.Heartbeat{PCID: "PC1", At: t0, AgentVersion: "0.44.0", Hostname: ptr("host1"), OSFamily: ptr("windows")})
	pub(wire.Heartbeat{PCID: "PC2", At: t0, AgentVersion: "0.44.0"})
	nc.Publish("heartbeat.PC3", []byte("junk"))
	nc.Flush()
	waitFor(t, "two agents", func() bool { return count(t, e.n.DB, `SELECT count(*) FROM agents`) == 2 })
	// A later heartbeat without the optional fields keeps them.
	pub(wire.Heartbeat{PCID: "PC1", At: t0.Add(30 * time.Second), AgentVersion: "0.45.0"})
	nc.Flush()
	waitFor(t, "the second heartbeat", func() bool {
		return one(t, e.n.DB, `SELECT agent_version FROM agents WHERE pc_id = 'PC1'`)["agent_version"] == "0.45.0"
	})
	check(t, one(t, e.n.DB, `SELECT * FROM agents WHERE pc_id = 'PC1'`), map[string]string{
		"hostname": "host1", "os_family": "windows", "last_heartbeat": ft(t0.Add(30 * time.Second)),
	})
	if st, err := e.p.Status(context.Background()); err != nil || st.Rows.Agents != 2 {
		t.Errorf("status counts %d agents (%v), want 2", st.Rows.Agents, err)
	}
	if e.p.hb.invalid.Load() != 1 {
		t.Errorf("%d invalid heartbeats counted, want 1", e.p.hb.invalid.Load())
	}
}

func TestStatusEndpoint(t *testing.T) {
	e := newEnv(t, Options{NodeName: "n1"})
	for i := range 5 {
		e.result(mkResult("r"+itoa(i), "", "PC1", 0))
	}
	e.settle(e.p)
	m, err := e.n.Conn(t).Request(SubjectStatus, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	if err := json.Unmarshal(m.Data, &st); err != nil {
		t.Fatalf("%v: %s", err, m.Data)
	}
	if st.Node != "n1" || len(st.Streams) != 3 {
		t.Fatalf("status %+v", st)
	}
	s := st.Streams[0]
	if s.Stream != wire.StreamResults || s.LastApplied != 5 || s.StreamLastSeq != 5 || s.Lag != 0 || s.Rows != 5 ||
		s.Consumer != "projector_n1_results" {
		t.Errorf("RESULTS status %+v", s)
	}
	if !st.CaughtUp || st.Rows.Results != 5 {
		t.Errorf("status %+v", st)
	}
	// Once a fetch came back empty, the in-process view agrees.
	waitFor(t, "caught up", func() bool { return e.p.CaughtUp(0) })
	if msgs, _ := e.p.Lag(); msgs != 0 {
		t.Errorf("lag %d messages", msgs)
	}
}

func TestPrune(t *testing.T) {
	e := newEnv(t, Options{NoService: true})
	old := mkResult("old", "", "PC-old", 0)
	old.StartedAt = t0.Add(-100 * 24 * time.Hour)
	old.ManifestID = ptr("job-old")
	e.result(old)
	e.result(mkResult("new", "", "PC1", 0))
	e.settle(e.p)
	n, err := e.p.Prune(context.Background(), t0.Add(-90*24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("prune: %d, %v", n, err)
	}
	db := e.n.DB
	if got := query(t, db, `SELECT result_id FROM execution_results`); len(got) != 1 || got[0]["result_id"] != "new" {
		t.Errorf("left %v", got)
	}
	if n := count(t, db, `SELECT count(*) FROM result_pc_ids WHERE pc_id = 'PC-old'`); n != 0 {
		t.Error("PC-old kept in result_pc_ids")
	}
	if n := count(t, db, `SELECT count(*) FROM result_job_ids WHERE job_id = 'job-old'`); n != 0 {
		t.Error("job-old kept in result_job_ids")
	}
	// A new result for a pruned pc puts it back.
	r := mkResult("again", "", "PC-old", 0)
	e.result(r)
	e.settle(e.p)
	if n := count(t, db, `SELECT count(*) FROM result_pc_ids WHERE pc_id = 'PC-old'`); n != 1 {
		t.Error("PC-old not back in result_pc_ids")
	}
}

// The consumer redelivers messages already applied (their acks were lost):
// they are skipped, and nothing is counted twice.
func TestRedeliveryAppliesNothingTwice(t *testing.T) {
	e := newEnv(t, Options{NoService: true, NodeName: "rd"})
	e.execution(mkExec("x1", 20, 60))
	for i := range 20 {
		r := mkResult("r"+itoa(i), "x1", "PC"+itoa(i), int64(i%3))
		if i%4 == 3 {
			r = mkSkipped(r.ResultID, "x1", r.PCID, wire.ExitDeadline)
		}
		e.result(r)
	}
	e.settle(e.p)
	before := query(t, e.n.DB, `SELECT * FROM executions`)
	e.p.Stop()

	// Leave the durable as a crash right after commit leaves it: all
	// delivered, none acked. A short ack wait makes it redeliver soon.
	ctx := context.Background()
	s := e.p.streams[0]
	if err := e.js.DeleteConsumer(ctx, s.name, s.durable); err != nil {
		t.Fatal(err)
	}
	cfg := s.consumerConfig(1)
	cfg.AckWait = time.Second
	c, err := e.js.CreateConsumer(ctx, s.name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Fetch(20, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range b.Messages() {
		n++
	}
	if n != 20 {
		t.Fatalf("fetched %d", n)
	}

	p := e.start(e.n.DB, Options{NoService: true, NodeName: "rd"})
	waitFor(t, "redelivery to be acked", func() bool {
		ci, err := e.js.Consumer(ctx, s.name, s.durable)
		return err == nil && ci.CachedInfo().AckFloor.Stream == 20 && ci.CachedInfo().NumAckPending == 0
	})
	if got := p.streams[0].count.Load(); got != 0 {
		t.Errorf("%d redelivered messages applied again", got)
	}
	if after := query(t, e.n.DB, `SELECT * FROM executions`); !equalRows(before[0], after[0]) {
		t.Errorf("executions changed by redelivery:\n%v\n%v", before, after)
	}
	check(t, execRow(t, e.n.DB, "x1"), map[string]string{"success_count": "5", "failure_count": "10", "skipped_count": "5", "status": "completed"})
}

// Delivered but never committed (a crash before commit): the consumer is
// put back at the offset, so nothing is lost behind newer messages.
func TestDeliveredNotCommittedIsNotLost(t *testing.T) {
	e := newEnv(t, Options{NoService: true, NodeName: "dn"})
	for i := range 10 {
		e.result(mkResult("a"+itoa(i), "", "PC1", 0))
	}
	e.settle(e.p)
	e.p.Stop()
	for i := range 10 {
		e.result(mkResult("b"+itoa(i), "", "PC1", 0))
	}
	ctx := context.Background()
	s := e.p.streams[0]
	c, err := e.js.Consumer(ctx, s.name, s.durable)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Fetch(10, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range b.Messages() { // delivered to a projector that died
	}
	for i := range 10 {
		e.result(mkResult("c"+itoa(i), "", "PC1", 0))
	}
	p := e.start(e.n.DB, Options{NoService: true, NodeName: "dn"})
	e.settle(p)
	if n := count(t, e.n.DB, `SELECT count(*) FROM execution_results`); n != 30 {
		t.Errorf("%d rows, want 30", n)
	}
}

func clone(r row) row {
	c := row{}
	for k, v := range r {
		c[k] = v
	}
	return c
}

func equalRows(a, b row) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// A stream deleted and made again restarts its sequences below the stored
// offset: new messages must still be projected.
func TestRecreatedStream(t *testing.T) {
	e := newEnv(t, Options{NoService: true, NodeName: "rs"})
	for i := range 5 {
		e.result(mkResult("a"+itoa(i), "", "PC1", 0))
	}
	e.settle(e.p)
	e.p.Stop()
	ctx := context.Background()
	if err := e.js.DeleteStream(ctx, wire.StreamResults); err != nil {
		t.Fatal(err)
	}
	if err := streams.Ensure(ctx, e.js, 1, e.n.Logger); err != nil {
		t.Fatal(err)
	}
	e.result(mkResult("b1", "", "PC1", 0))
	e.result(mkResult("a1", "", "PC1", 0)) // a duplicate of a projected row
	p := e.start(e.n.DB, Options{NoService: true, NodeName: "rs"})
	e.settle(p)
	if n := count(t, e.n.DB, `SELECT count(*) FROM execution_results`); n != 6 {
		t.Errorf("%d rows, want 6", n)
	}
	if got := offsetOf(t, e.n.DB, wire.StreamResults); got != 2 {
		t.Errorf("offset %d, want 2", got)
	}
}

// CaughtUp is false while a backlog is replayed, and true once it is done.
func TestCaughtUpDuringBacklog(t *testing.T) {
	n := nodetest.Start(t)
	e := &env{t: t, n: n, js: n.JetStream(t)}
	for i := range 2000 {
		e.result(mkResult("r"+itoa(i), "", "PC1", 0))
	}
	p := e.start(n.DB, Options{NoService: true, Batch: 50})
	if p.CaughtUp(0) {
		t.Error("caught up right after start, with 2000 results to replay")
	}
	e.settle(p)
	waitFor(t, "caught up", func() bool { return p.CaughtUp(0) })
	if m, b := p.Lag(); m != 0 || b != 0 {
		t.Errorf("lag %d messages, %v once caught up", m, b)
	}
}
