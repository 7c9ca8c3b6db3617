package projector

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/wire"
)

// A projection that starts after RESULTS lost its first messages records
// the gap, keeps the node out of the read queue groups (JoinBlocked) across
// a restart, and lets it in once started with AcceptGaps. A live purge
// under a running projector is a gap too.
func TestHistoryGap(t *testing.T) {
	n := nodetest.Start(t)
	e := &env{t: t, n: n, js: n.JetStream(t)}
	for i := range 10 {
		e.result(mkResult("g"+itoa(i), "", "PC1", 0))
	}
	ctx := context.Background()
	purge := func(below uint64) {
		t.Helper()
		s, err := e.js.Stream(ctx, wire.StreamResults)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Purge(ctx, jetstream.WithPurgeSequence(below)); err != nil {
			t.Fatal(err)
		}
	}
	purge(6)
	p := e.start(n.DB, Options{NoService: true, NodeName: "gap"})
	e.settle(p)
	if n := count(t, n.DB, `SELECT count(*) FROM execution_results`); n != 5 {
		t.Fatalf("%d rows, want the 5 left in the stream", n)
	}
	gaps := p.Gaps()
	if len(gaps) != 1 || gaps[0].Stream != wire.StreamResults || gaps[0].FromSeq != 1 || gaps[0].ToSeq != 5 || gaps[0].AcceptedAt != nil {
		t.Fatalf("gaps %+v, want RESULTS 1-5 not accepted", gaps)
	}
	if p.JoinBlocked() == "" {
		t.Fatal("JoinBlocked empty with an unaccepted gap")
	}
	st, err := p.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.HistoryGaps) != 1 || st.JoinBlocked == "" {
		t.Fatalf("status gaps %+v blocked %q", st.HistoryGaps, st.JoinBlocked)
	}

	// The gap is stored: a restart without the flag still blocks (the
	// offset has moved past the hole, so nothing else would tell).
	p.Stop()
	p = e.start(n.DB, Options{NoService: true, NodeName: "gap"})
	if p.JoinBlocked() == "" {
		t.Fatal("restart forgot the gap")
	}
	p.Stop()
	p = e.start(n.DB, Options{NoService: true, NodeName: "gap", AcceptGaps: true})
	if why := p.JoinBlocked(); why != "" {
		t.Fatalf("accepted gap still blocks: %s", why)
	}
	if g := p.Gaps(); len(g) != 1 || g[0].AcceptedAt == nil {
		t.Fatalf("gaps %+v, want one accepted", g)
	}
	p.Stop()

	// A purge while the projector is stopped, of messages it never
	// applied, is found at the next start; one under the retention
	// cutoff (all it lost would have been pruned anyway) is not a gap.
	for i := range 5 {
		e.result(mkResult("h"+itoa(i), "", "PC1", 0))
	}
	purge(14)
	p = e.start(n.DB, Options{NoService: true, NodeName: "gap"})
	e.settle(p)
	if g := p.Gaps(); len(g) != 2 || g[1].FromSeq != 11 || g[1].ToSeq != 13 {
		t.Fatalf("gaps %+v, want a second one 11-13", g)
	}
	p.Stop()
	for i := range 5 {
		e.result(mkResult("k"+itoa(i), "", "PC1", 0))
	}
	purge(18)
	time.Sleep(5 * time.Millisecond) // the retention cutoff is behind every message
	p = e.start(n.DB, Options{NoService: true, NodeName: "gap", Retention: time.Millisecond})
	e.settle(p)
	if g := p.Gaps(); len(g) != 2 {
		t.Fatalf("gaps %+v: a hole older than the retention is no gap", g)
	}
}
