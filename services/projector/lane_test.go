package projector

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// putMeta writes an object's meta as an agent could: whatever it likes.
func (e *env) putMeta(key string, info jetstream.ObjectInfo) {
	e.t.Helper()
	info.Name, info.Bucket = key, wire.ObjectStoreOutput
	b, _ := json.Marshal(info)
	subj := "$O." + wire.ObjectStoreOutput + ".M." + base64.URLEncoding.EncodeToString([]byte(key))
	if _, err := e.js.Publish(context.Background(), subj, b); err != nil {
		e.t.Fatal(err)
	}
}

// TestPoisonOutputObjects is recipe 3 of issue 13: a key of ~3,000
// characters, an object without chunks, an object linking to itself (and a
// few more of the kind) each become a reject with its reason and a result
// row with a note, promptly, and the projection goes on. A bad meta is
// not retried: the backoff of an hour would stall the test.
func TestPoisonOutputObjects(t *testing.T) {
	e := newEnv(t, Options{NoService: true, ObjectDeadline: 5 * time.Second, ObjectBackoff: time.Hour})
	ctx := context.Background()
	obs, err := e.js.ObjectStore(ctx, wire.ObjectStoreOutput)
	if err != nil {
		t.Fatal(err)
	}
	e.putMeta("nochunks/stdout", jetstream.ObjectInfo{NUID: "nochunks1", Size: 300 << 10, Chunks: 3})
	e.putMeta("self/stdout", jetstream.ObjectInfo{NUID: "self1", ObjectMeta: jetstream.ObjectMeta{
		Opts: &jetstream.ObjectMetaOptions{Link: &jetstream.ObjectLink{Bucket: wire.ObjectStoreOutput, Name: "self/stdout"}}}})
	e.putMeta("wild/stdout", jetstream.ObjectInfo{NUID: ">", Size: 10, Chunks: 1})
	e.putMeta("huge/stdout", jetstream.ObjectInfo{NUID: "huge1", Size: 1 << 40, Chunks: 1})
	e.putMeta("other/stdout", jetstream.ObjectInfo{NUID: "o1", ObjectMeta: jetstream.ObjectMeta{
		Opts: &jetstream.ObjectMetaOptions{Link: &jetstream.ObjectLink{Bucket: "secrets", Name: "x"}}}})
	good := bytes.Repeat([]byte("good output\n"), 30000)
	if _, err := obs.PutBytes(ctx, "good/stdout", good); err != nil {
		t.Fatal(err)
	}
	// A link to the good object: one hop is followed.
	if _, err := obs.AddLink(ctx, "link/stdout", &jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: "good/stdout"},
		Bucket: wire.ObjectStoreOutput, NUID: "x"}); err != nil {
		t.Fatalf("link: %v", err)
	}
	// A link to that link: not followed.
	e.putMeta("link2/stdout", jetstream.ObjectInfo{NUID: "l2", ObjectMeta: jetstream.ObjectMeta{
		Opts: &jetstream.ObjectMetaOptions{Link: &jetstream.ObjectLink{Bucket: wire.ObjectStoreOutput, Name: "link/stdout"}}}})

	keys := map[string]string{ // result_id -> stdout_object
		"r-long":  strings.Repeat("k", 3000),
		"r-none":  "nochunks/stdout",
		"r-self":  "self/stdout",
		"r-wild":  "wild/stdout",
		"r-huge":  "huge/stdout",
		"r-other": "other/stdout",
		"r-link2": "link2/stdout",
		"r-good":  "good/stdout",
		"r-link":  "link/stdout",
	}
	start := time.Now()
	for _, id := range []string{"r-long", "r-none", "r-self", "r-wild", "r-huge", "r-other", "r-link2", "r-good", "r-link"} {
		e.result(wire.ExecResult{ResultID: id, RequestID: "req-" + id, PCID: "PC1", ExitCode: 0,
			Stdout: "inline", StdoutObject: ptr(keys[id]), FinishedAt: t0})
	}
	e.settle(e.p)
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the poison took %s to project", d)
	}
	for id, want := range map[string]string{
		"r-long": "key of 3000 bytes exceeds", "r-none": "meta says 3 chunks, the store holds 0",
		"r-self": "links to a link", "r-wild": "no valid chunk subject", "r-huge": "exceeds the agents' cap",
		"r-other": `links to bucket "secrets"`, "r-link2": "links to a link",
	} {
		r := resultRow(t, e.n.DB, id)
		if !strings.HasPrefix(r["stdout"], "inline\n[kanade: output object result_output/") || !strings.Contains(r["stdout"], want) {
			t.Errorf("%s: stdout %q, want a note saying %q", id, r["stdout"], want)
		}
		rej := query(t, e.n.DB, `SELECT error FROM rejects WHERE subject = ?`, wire.Results("req-"+id))
		if len(rej) != 1 || !strings.Contains(rej[0]["error"], want) {
			t.Errorf("%s: rejects %v, want one saying %q", id, rej, want)
		}
	}
	for _, id := range []string{"r-good", "r-link"} {
		if r := resultRow(t, e.n.DB, id); r["stdout"] != string(good) {
			t.Errorf("%s: stdout of %d bytes, want the %d of the object", id, len(r["stdout"]), len(good))
		}
	}
	if n := count(t, e.n.DB, `SELECT count(*) FROM rejects`); n != 7 {
		t.Errorf("%d rejects, want 7", n)
	}
}

// TestObjectSizeLie: a meta whose size is not its chunks' is a note and a
// reject.
func TestObjectSizeLie(t *testing.T) {
	e := newEnv(t, Options{NoService: true, ObjectDeadline: time.Second})
	ctx := context.Background()
	obs, _ := e.js.ObjectStore(ctx, wire.ObjectStoreOutput)
	if _, err := obs.PutBytes(ctx, "lie/stdout", []byte("x")); err != nil {
		t.Fatal(err)
	}
	info, _ := obs.GetInfo(ctx, "lie/stdout")
	e.putMeta("lie/stdout", jetstream.ObjectInfo{NUID: info.NUID, Size: 10, Chunks: 1})
	e.result(wire.ExecResult{ResultID: "r1", RequestID: "q1", PCID: "PC1", StdoutObject: ptr("lie/stdout"), FinishedAt: t0})
	e.settle(e.p)
	if r := resultRow(t, e.n.DB, "r1"); !strings.Contains(r["stdout"], "chunks hold 1 bytes, the meta says 10") {
		t.Fatalf("stdout %q", r["stdout"])
	}
}

// TestObjectDeadline: an object the projector cannot read (here its
// connection may not read the object store: every try fails) is a note
// and a reject once the last attempt's deadline passes, not a stall.
func TestObjectDeadline(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "auth.conf")
	os.WriteFile(conf, []byte(`authorization { users = [
		{user: full, password: full}
		{user: noobj, password: noobj, permissions: {publish: {deny: ["$JS.API.DIRECT.GET.OBJ_result_output.>", "$JS.API.STREAM.MSG.GET.OBJ_result_output"]}}}
	] }`), 0o600)
	srv, err := embedded.Start(embedded.Options{StoreDir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:0",
		Sync: embedded.SyncInterval, Logger: nodetest.Logger(t), ConfigFile: conf})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	full, err := nats.Connect(srv.ClientURL(), nats.UserInfo("full", "full"))
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	js, _ := jetstream.New(full)
	ctx := context.Background()
	if err := streams.Ensure(ctx, js, 1, nodetest.Logger(t)); err != nil {
		t.Fatal(err)
	}
	obs, _ := js.ObjectStore(ctx, wire.ObjectStoreOutput)
	obs.PutBytes(ctx, "a/stdout", bytes.Repeat([]byte("x"), 300<<10))
	b, _ := json.Marshal(wire.ExecResult{ResultID: "r1", RequestID: "q1", PCID: "PC1", StdoutObject: ptr("a/stdout"), FinishedAt: t0})
	js.Publish(ctx, wire.Results("q1"), b)
	b, _ = json.Marshal(wire.ExecResult{ResultID: "r2", RequestID: "q2", PCID: "PC1", Stdout: "after", FinishedAt: t0})
	js.Publish(ctx, wire.Results("q2"), b)

	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("noobj", "noobj"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	db := nodetest.OpenStore(t, filepath.Join(dir, "kanade.db"))
	start := time.Now()
	p, err := Start(ctx, Options{Conn: nc, DB: db, NodeName: "t", Logger: nodetest.Logger(t), NoService: true, ObjectDeadline: time.Second,
		ObjectAttempts: 2, ObjectBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	waitFor(t, "the result after the unreadable one", func() bool {
		return count(t, db, `SELECT count(*) FROM execution_results WHERE result_id = 'r2'`) == 1
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the unreadable object held the projection for %s", d)
	}
	if r := resultRow(t, db, "r1"); !strings.Contains(r["stdout"], "not read after 2 attempts, the last not read within 1s") {
		t.Fatalf("stdout %q", r["stdout"])
	}
	if n := count(t, db, `SELECT count(*) FROM rejects WHERE error LIKE '%not read within%'`); n != 1 {
		t.Fatalf("%d rejects", n)
	}
}

// TestPCIDChecks is recipe 4's projector part: a started event whose
// pc_id is not its subject's, and a result_id sent again by another pc_id,
// are rejected; the first sender keeps the row.
func TestPCIDChecks(t *testing.T) {
	e := newEnv(t, Options{NoService: true})
	e.publish(wire.Started("ex1", "PC1"), wire.EventStarted{ResultID: "r0", RequestID: "q0", ExecID: "ex1", PCID: "PC2", StartedAt: t0})
	e.result(wire.ExecResult{ResultID: "r1", RequestID: "q1", ExecID: ptr("ex1"), PCID: "PC1", ExitCode: 0, Stdout: "mine", FinishedAt: t0})
	// Within one batch: the first of the stream keeps the row.
	e.result(wire.ExecResult{ResultID: "r2", RequestID: "q2", ExecID: ptr("ex1"), PCID: "PC1", ExitCode: 0, Stdout: "ok", FinishedAt: t0})
	e.result(wire.ExecResult{ResultID: "r2", RequestID: "q2", ExecID: ptr("ex1"), PCID: "PC3", ExitCode: 1, FinishedAt: t0})
	e.settle(e.p)
	// Later, from either stream (which of two streams is read first is not
	// fixed, hence the settle: the first sender is the first projected).
	e.result(wire.ExecResult{ResultID: "r1", RequestID: "q1", ExecID: ptr("ex1"), PCID: "PC2", ExitCode: 1, Stdout: "forged", FinishedAt: t0})
	e.started(wire.EventStarted{ResultID: "r1", RequestID: "q1", ExecID: "ex1", PCID: "PC2", StartedAt: t0})
	e.settle(e.p)
	if n := count(t, e.n.DB, `SELECT count(*) FROM execution_results WHERE result_id = 'r0'`); n != 0 {
		t.Error("a started event with another pc_id than its subject's made a row")
	}
	check(t, resultRow(t, e.n.DB, "r1"), map[string]string{"pc_id": "PC1", "stdout": "mine", "exit_code": "0"})
	check(t, resultRow(t, e.n.DB, "r2"), map[string]string{"pc_id": "PC1", "stdout": "ok", "exit_code": "0"})
	rej := query(t, e.n.DB, `SELECT stream, error FROM rejects ORDER BY stream, seq`)
	if len(rej) != 4 {
		t.Fatalf("rejects %v, want 4", rej)
	}
	for _, r := range rej {
		if !strings.Contains(r["error"], "pc_id") {
			t.Errorf("reject %v does not name the pc_id", r)
		}
	}
}

// TestHeartbeatPCIDAndClock: a heartbeat speaks for its subject's pc_id
// only, and its at cannot lie in the future.
func TestHeartbeatPCIDAndClock(t *testing.T) {
	e := newEnv(t, Options{NoService: true})
	nc := e.n.Conn(t)
	for i := range 50 {
		b, _ := json.Marshal(wire.Heartbeat{PCID: "FAKE" + string(rune('A'+i%26)) + string(rune('a'+i/26)), At: t0, AgentVersion: "x"})
		nc.Publish(wire.HeartbeatSubject("PC1"), b)
	}
	b, _ := json.Marshal(wire.Heartbeat{PCID: "PC1", At: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), AgentVersion: "x"})
	before := time.Now()
	nc.Publish(wire.HeartbeatSubject("PC1"), b)
	nc.Flush()
	waitFor(t, "PC1's heartbeat", func() bool { return count(t, e.n.DB, `SELECT count(*) FROM agents`) == 1 })
	if got := e.p.hb.mismatched.Load(); got != 50 {
		t.Errorf("%d mismatched heartbeats counted, want 50", got)
	}
	last := one(t, e.n.DB, `SELECT last_heartbeat FROM agents WHERE pc_id = 'PC1'`)["last_heartbeat"]
	at, err := time.Parse(time.RFC3339Nano, last)
	if err != nil || at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("last_heartbeat %s, want the receive time (%v)", last, err)
	}
	if st, _ := e.p.Status(context.Background()); st.Heartbeats.Mismatched != 50 {
		t.Errorf("status says %d mismatched", st.Heartbeats.Mismatched)
	}
}
