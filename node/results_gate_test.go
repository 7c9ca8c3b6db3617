package node

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/services/projector"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// TestResultsGate drives the gate with a given projection lag and checks,
// over real NATS, whether a request on the gated service finds a responder.
func TestResultsGate(t *testing.T) {
	n := nodetest.Start(t)
	nc := n.Conn(t)
	client := n.Conn(t)
	start := func() (stopper, error) {
		return api.Start(nc, api.Service{Name: "results", Logger: n.Logger, Endpoints: []api.Endpoint{{
			Name: "list", Subject: "kanade.results.list",
			Handler: func(context.Context, api.Request) (any, error) { return []string{}, nil },
		}}})
	}
	answers := func() bool {
		t.Helper()
		_, err := client.Request("kanade.results.list", nil, 5*time.Second)
		if err != nil && !errors.Is(err, nats.ErrNoResponders) {
			t.Fatal(err)
		}
		return err == nil
	}

	var lag atomic.Int64 // -1 = current; else how far behind
	caughtUp := func(max time.Duration) bool {
		l := lag.Load()
		return l < 0 || time.Duration(l) <= max
	}
	g := newResultsGate(caughtUp, start, nc, time.Second, 10*time.Second, n.Logger)
	now := time.Now()
	step := func(d time.Duration) { now = now.Add(d); g.check(now) }

	lag.Store(int64(30 * time.Second)) // a rebuild under way
	step(0)
	if g.serving() || answers() {
		t.Fatal("serving while 30 s behind")
	}
	lag.Store(int64(500 * time.Millisecond))
	step(gateEvery)
	if g.serving() || answers() {
		t.Fatal("joined on the first check within the join lag")
	}
	step(gateEvery)
	step(time.Second)
	if !g.serving() || !answers() {
		t.Fatal("not serving after a second within the join lag")
	}
	select {
	case <-g.joined:
	default:
		t.Fatal("first join not signalled")
	}

	lag.Store(int64(5 * time.Second)) // slower, still under the leave lag
	step(gateEvery)
	if !answers() {
		t.Fatal("left while under the leave lag")
	}
	lag.Store(int64(11 * time.Second))
	step(gateEvery)
	if g.serving() || answers() {
		t.Fatal("still serving 11 s behind")
	}

	lag.Store(-1) // drained: current, joins at once
	step(gateEvery)
	if !answers() {
		t.Fatal("not serving when current")
	}

	// Stopping the node takes the service out of the queue group.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.run(ctx); close(done) }()
	cancel()
	<-done
	if answers() {
		t.Fatal("still answering after the gate stopped")
	}
}

func TestResultsGateWithoutProjector(t *testing.T) {
	n := nodetest.Start(t)
	nc := n.Conn(t)
	var started atomic.Int32
	g := newResultsGate(nil, func() (stopper, error) {
		started.Add(1)
		return api.Start(nc, api.Service{Name: "results", Logger: n.Logger})
	}, nc, 0, 0, n.Logger)
	g.check(time.Now())
	g.check(time.Now())
	if started.Load() != 1 || !g.serving() {
		t.Fatalf("started %d times, serving %v; want once, serving", started.Load(), g.serving())
	}
}

// TestResultsGateWaitsForLeaderHeads: a projection that looks current to
// its own consumers joins only once it has applied what the streams'
// leaders reported.
func TestResultsGateWaitsForLeaderHeads(t *testing.T) {
	n := nodetest.Start(t)
	nc := n.Conn(t)
	var applied, last atomic.Uint64
	g := newResultsGate(func(time.Duration) bool { return true }, func() (stopper, error) {
		return api.Start(nc, api.Service{Name: "results", Logger: n.Logger})
	}, nc, time.Second, 10*time.Second, n.Logger)
	g.positions = func(context.Context) (map[string]streamPos, error) {
		return map[string]streamPos{"RESULTS": {Applied: applied.Load(), Last: last.Load()}}, nil
	}
	now := time.Now()
	step := func(d time.Duration) { now = now.Add(d); g.check(now) }

	applied.Store(200)
	last.Store(900) // a replica catching up served the consumer
	step(0)
	if g.serving() {
		t.Fatal("joined 700 messages short of the leader's head")
	}
	applied.Store(899)
	last.Store(950) // the head moved on; the target stays 900 for a while
	step(gateEvery)
	if g.serving() {
		t.Fatal("joined short of the head asked for")
	}
	applied.Store(905)
	step(gateEvery)
	if !g.serving() {
		t.Fatal("not serving once the head asked for was reached")
	}
}

// TestProjectionPositions reads real positions from a real projector.
func TestProjectionPositions(t *testing.T) {
	n := nodetest.Start(t)
	js := n.JetStream(t)
	ctx := context.Background()
	for i := range 5 {
		rid := fmt.Sprintf("00000000-0000-4000-8000-00000000000%d", i)
		if _, err := js.Publish(ctx, wire.Results(rid), []byte(`{"result_id":"`+rid+`","request_id":"`+rid+`","pc_id":"PC1","exit_code":0,"started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:01Z"}`)); err != nil {
			t.Fatal(err)
		}
	}
	p, err := projector.Start(ctx, projector.Options{Conn: n.Conn(t), DB: n.DB, NodeName: "t", Logger: n.Logger, NoService: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	positions := projectionPositions(js, p)
	deadline := time.Now().Add(30 * time.Second)
	for {
		pos, err := positions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r := pos[wire.StreamResults]
		if r.Last != 5 {
			t.Fatalf("RESULTS last %d, want 5 (%+v)", r.Last, pos)
		}
		if e, ok := pos[streams.StreamExecutions]; !ok || e.Last != 0 {
			t.Fatalf("EXECUTIONS (empty) %+v present %v, want last 0", e, ok)
		}
		if r.Applied == 5 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("projector applied %d of 5", r.Applied)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
