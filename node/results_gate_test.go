package node

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
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
	g := newResultsGate(caughtUp, start, time.Second, 10*time.Second, n.Logger)
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
	var started atomic.Int32
	g := newResultsGate(nil, func() (stopper, error) {
		started.Add(1)
		return api.Start(n.Conn(t), api.Service{Name: "results", Logger: n.Logger})
	}, 0, 0, n.Logger)
	g.check(time.Now())
	g.check(time.Now())
	if started.Load() != 1 || !g.serving() {
		t.Fatalf("started %d times, serving %v; want once, serving", started.Load(), g.serving())
	}
}
