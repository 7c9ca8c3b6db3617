package snapshot

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/projector"
	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

func publish(t testing.TB, js jetstream.JetStream, subject string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), subject, b); err != nil {
		t.Fatal(err)
	}
}

func feed(t *testing.T, js jetstream.JetStream, from, n int) { feedTB(t, js, from, n) }

func feedB(b *testing.B, js jetstream.JetStream, n int) { feedTB(b, js, 0, n) }

func feedTB(t testing.TB, js jetstream.JetStream, from, n int) {
	t.Helper()
	t0 := time.Now().UTC().Add(-time.Hour)
	for i := from; i < from+n; i++ {
		exec := fmt.Sprintf("e%d", i/10)
		if i%10 == 0 {
			publish(t, js, streams.ExecutionSubject(exec), streams.ExecutionRecord{
				ExecID: exec, RequestID: "req-" + exec, JobID: "job", InitiatedAt: t0, TargetCount: 10,
			})
		}
		r := wire.ExecResult{
			ResultID: fmt.Sprintf("r%05d", i), RequestID: "req-" + exec, ExecID: &exec, PCID: fmt.Sprintf("PC%d", i%7),
			ExitCode: int64(i % 3), Stdout: output(i), StartedAt: t0, FinishedAt: t0.Add(time.Second),
		}
		publish(t, js, wire.Results(r.RequestID), r)
	}
}

func startProjector(t *testing.T, n *nodetest.Node, db *store.DB) *projector.Projector {
	return startProjectorTB(t, n, db)
}

func startProjectorB(b *testing.B, n *nodetest.Node) *projector.Projector {
	return startProjectorTB(b, n, n.DB)
}

func startProjectorTB(t testing.TB, n *nodetest.Node, db *store.DB) *projector.Projector {
	t.Helper()
	p, err := projector.Start(context.Background(), projector.Options{
		Conn: n.Conn(t), DB: db, NodeName: "snap", Logger: n.Logger, NoService: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	return p
}

func waitApplied(t *testing.T, p *projector.Projector, results uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := p.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st.Streams {
			if s.Stream == wire.StreamResults && s.LastApplied >= results && st.CaughtUp {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("projection not at %d: %+v", results, st.Streams)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dump is every row of the tables a snapshot must carry, in order.
func dump(t *testing.T, db *store.DB) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT result_id, exec_id, pc_id, exit_code, stdout, finished_at FROM execution_results ORDER BY result_id`,
		`SELECT exec_id, success_count, failure_count, skipped_count, status FROM executions ORDER BY exec_id`,
		`SELECT stream, last_seq FROM projector_offsets ORDER BY stream`,
	} {
		rows, err := db.R.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&b, vals...)
		}
		rows.Close()
	}
	return b.String()
}

// A snapshot of a fed projection, restored in place of a missing
// database, holds the same rows and offsets; the projector then replays
// only what came after it, although the stream lost everything before.
func TestSnapshotRestore(t *testing.T) {
	n := nodetest.Start(t)
	js := n.JetStream(t)
	p := startProjector(t, n, n.DB)
	feed(t, js, 0, 300)
	waitApplied(t, p, 300)
	s, err := Start(context.Background(), Options{Conn: n.Conn(t), DB: n.DB, NodeName: "snap", Logger: n.Logger,
		Projection: p, Interval: -1, Keep: 2, NoService: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	var infos []Info
	for range 3 {
		in, err := s.Take(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		infos = append(infos, in)
	}
	in := infos[2]
	if in.Offsets[wire.StreamResults] != 300 || in.Offsets[streams.StreamExecutions] != 30 || in.Results != 300 {
		t.Fatalf("snapshot info %+v", in)
	}
	list, err := List(context.Background(), s.obj)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != in.Name || list[1].Name != infos[1].Name {
		t.Fatalf("bucket keeps %+v, want the last 2", list)
	}
	want := dump(t, n.DB)

	// More traffic, then the stream loses everything up to the snapshot.
	feed(t, js, 300, 50)
	waitApplied(t, p, 350)
	str, err := js.Stream(context.Background(), wire.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	if err := str.Purge(context.Background(), jetstream.WithPurgeSequence(301)); err != nil {
		t.Fatal(err)
	}
	full := dump(t, n.DB)

	path := filepath.Join(t.TempDir(), "kanade.db")
	got, err := RestoreIfEmpty(context.Background(), js, path, nil, n.Logger)
	if err != nil || got == nil || got.Name != in.Name {
		t.Fatalf("restore: %+v %v", got, err)
	}
	db := nodetest.OpenStore(t, path)
	if d := dump(t, db); d != want {
		t.Fatalf("restored rows differ from the snapshot's")
	}
	// A projector on the restored copy (another node name: its own
	// consumers) replays from the snapshot's sequences and ends equal.
	p2, err := projector.Start(context.Background(), projector.Options{
		Conn: n.Conn(t), DB: db, NodeName: "restored", Logger: n.Logger, NoService: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop()
	waitApplied(t, p2, 350)
	if d := dump(t, db); d != full {
		t.Fatalf("restored and replayed projection differs from the original")
	}
	if g := p2.Gaps(); len(g) != 0 {
		t.Fatalf("gaps %+v after a restore that covers the purge", g)
	}
	// A database that holds rows is never replaced.
	if got, err := RestoreIfEmpty(context.Background(), js, path, nil, n.Logger); err != nil || got != nil {
		t.Fatalf("restore over a fed projection: %+v %v", got, err)
	}
}

// Nodes claim each period once between them.
func TestClaimOnce(t *testing.T) {
	n := nodetest.Start(t)
	var ss []*Snapshotter
	for i := range 3 {
		s, err := Start(context.Background(), Options{Conn: n.Conn(t), DB: n.DB, NodeName: fmt.Sprint("n", i),
			Logger: n.Logger, Interval: -1, NoService: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop()
		ss = append(ss, s)
	}
	for period := int64(100); period < 103; period++ {
		won := 0
		for _, s := range ss {
			ok, err := s.claim(context.Background(), period)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				won++
			}
		}
		if won != 1 {
			t.Fatalf("period %d claimed %d times", period, won)
		}
	}
	if ok, _ := ss[0].claim(context.Background(), 101); ok {
		t.Fatal("an older period was claimed again")
	}
}

// The periodic loop takes snapshots on its own and keeps the last Keep;
// a projection that is not ready (history gaps) takes none.
func TestPeriodicSnapshots(t *testing.T) {
	n := nodetest.Start(t)
	js := n.JetStream(t)
	p := startProjector(t, n, n.DB)
	feed(t, js, 0, 20)
	waitApplied(t, p, 20)
	s, err := Start(context.Background(), Options{Conn: n.Conn(t), DB: n.DB, NodeName: "snap", Logger: n.Logger,
		Projection: p, Interval: time.Second, Keep: 2, NoService: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	deadline := time.Now().Add(20 * time.Second)
	for {
		list, err := List(context.Background(), s.obj)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) > 2 {
			t.Fatalf("%d snapshots kept, want at most 2", len(list))
		}
		if len(list) == 2 {
			if list[0].Offsets[wire.StreamResults] != 20 {
				t.Fatalf("periodic snapshot %+v", list[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d periodic snapshots in 20 s", len(list))
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Stop()

	notReady := gappy{}
	s2, err := Start(context.Background(), Options{Conn: n.Conn(t), DB: n.DB, NodeName: "gappy", Logger: n.Logger,
		Projection: notReady, Interval: -1, NoService: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Stop()
	if _, err := s2.Take(context.Background()); err != ErrNotReady {
		t.Fatalf("snapshot of a projection with gaps: %v", err)
	}

	// Accepted gaps: a snapshot may be taken (it carries them), and the
	// periodic loop waits while a peer's snapshot is recent.
	s3, err := Start(context.Background(), Options{Conn: n.Conn(t), DB: n.DB, NodeName: "accepted", Logger: n.Logger,
		Projection: accepted{}, Interval: -1, NoService: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Stop()
	if _, err := s3.Take(context.Background()); err != nil {
		t.Fatalf("snapshot of a projection with accepted gaps: %v", err)
	}
	if s3.noneSince(context.Background(), time.Hour) {
		t.Fatal("noneSince(1h) right after a snapshot")
	}
}

type accepted struct{}

func (accepted) CaughtUp(time.Duration) bool { return true }
func (accepted) HasGaps() bool               { return true }
func (accepted) JoinBlocked() string         { return "" }

type gappy struct{}

func (gappy) CaughtUp(time.Duration) bool { return true }
func (gappy) HasGaps() bool               { return true }
func (gappy) JoinBlocked() string         { return "history gap in RESULTS" }

// output is about 600 bytes of script output with the numbers of run i.
func output(i int) string {
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	var b strings.Builder
	for j := range 8 {
		fmt.Fprintf(&b, "%02d:%02d:%02d service %s pid %d mem %d KB state %s\r\n", 8, j*7%60, rng.IntN(60),
			[]string{"wuauserv", "BITS", "Spooler", "Dnscache", "W32Time"}[rng.IntN(5)], 400+rng.IntN(30000),
			rng.IntN(900000), []string{"Running", "Running", "Running", "Stopped"}[rng.IntN(4)])
	}
	return b.String()
}

// With the cluster's signing key, a node restores only snapshots that key
// signed, whose meta nobody changed since; unsigned ones, another key's,
// and objects that are no snapshot are skipped.
func TestSignedSnapshots(t *testing.T) {
	n := nodetest.Start(t)
	js := n.JetStream(t)
	p := startProjector(t, n, n.DB)
	feed(t, js, 0, 30)
	waitApplied(t, p, 30)
	key, _, err := signing.Generate("cluster-key")
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := signing.Generate("other-key")
	if err != nil {
		t.Fatal(err)
	}
	take := func(signer *signing.Signer) Info {
		t.Helper()
		s, err := Start(context.Background(), Options{Conn: n.Conn(t), DB: n.DB, NodeName: "snap", Logger: n.Logger,
			Projection: p, Interval: -1, Keep: 10, NoService: true, Signer: signer})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop()
		in, err := s.Take(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	restore := func(verify *signing.Signer) *Info {
		t.Helper()
		got, err := RestoreIfEmpty(context.Background(), js, filepath.Join(t.TempDir(), "kanade.db"), verify, n.Logger)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	signed := take(key)
	if signed.SignedBy != "cluster-key" {
		t.Fatalf("snapshot signed by %q", signed.SignedBy)
	}
	take(other)
	unsigned := take(nil)
	obj, err := js.ObjectStore(context.Background(), Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obj.PutString(context.Background(), "99991231T000000.000000000Z-evil", "not a database"); err != nil {
		t.Fatal(err)
	}
	// With snapshot metadata, newest, but not zstd: its restore fails and
	// an older snapshot is restored instead.
	if _, err := obj.Put(context.Background(), jetstream.ObjectMeta{Name: "99991230T000000.000000000Z-evil",
		Metadata: map[string]string{metaNode: "evil", metaEncoding: "zstd", metaOffsets: `{"RESULTS":999}`, metaDBBytes: "4096",
			metaCreated: "9999-12-30T00:00:00Z"}}, strings.NewReader("not zstd")); err != nil {
		t.Fatal(err)
	}
	if _, err := obj.PutString(context.Background(), "zzz-not-a-snapshot", "x"); err != nil {
		t.Fatal(err)
	}
	// Newest first: the planted object and the unsigned and other-key
	// snapshots are skipped; the key's own is restored.
	if got := restore(key); got == nil || got.Name != signed.Name {
		t.Fatalf("restored %+v, want %s", got, signed.Name)
	}
	if got := restore(nil); got == nil || got.Name != unsigned.Name {
		t.Fatalf("without a key restored %+v, want the newest real snapshot %s", got, unsigned.Name)
	}
	// Meta changed after signing (offsets moved back): no longer trusted.
	oi, err := obj.GetInfo(context.Background(), signed.Name)
	if err != nil {
		t.Fatal(err)
	}
	meta := oi.ObjectMeta
	meta.Metadata[metaOffsets] = `{"RESULTS":1}`
	if err := obj.UpdateMeta(context.Background(), signed.Name, meta); err != nil {
		t.Fatal(err)
	}
	if got := restore(key); got != nil {
		t.Fatalf("restored a snapshot whose meta changed after signing: %+v", got)
	}
}
