package node

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Defaults of the results gate.
const (
	DefaultResultsJoinLag  = time.Second
	DefaultResultsLeaveLag = 10 * time.Second
	gateEvery              = 250 * time.Millisecond
)

// stopper is a started service.
type stopper interface{ Stop() error }

// resultsGate keeps this node's read services (results, executions,
// agents) in their queue groups only while its own SQLite projection is
// fresh, so that with several nodes a request never lands on one that is
// still catching up: it joins when the projection is current, or has
// stayed within join of its streams' heads for join; it leaves when the
// projection falls more than leave behind.
type resultsGate struct {
	// caughtUp reports whether every projected stream is current or
	// behind by no more than max; nil when this node runs no projector
	// (the services then start at once: nothing here can tell freshness).
	caughtUp    func(max time.Duration) bool
	start       func() (stopper, error)
	join, leave time.Duration
	log         *slog.Logger

	mu      sync.Mutex
	svc     stopper
	since   time.Time     // start of the current run of fresh checks
	joined  chan struct{} // closed at the first join
	joinOne sync.Once
}

func newResultsGate(caughtUp func(time.Duration) bool, start func() (stopper, error), join, leave time.Duration, log *slog.Logger) *resultsGate {
	if join <= 0 {
		join = DefaultResultsJoinLag
	}
	if leave < join {
		leave = max(DefaultResultsLeaveLag, join)
	}
	return &resultsGate{caughtUp: caughtUp, start: start, join: join, leave: leave, log: log, joined: make(chan struct{})}
}

// run checks the projection every 250 ms until ctx ends, then stops the
// services if they are running. It is owned by node.Run.
func (g *resultsGate) run(ctx context.Context) {
	t := time.NewTicker(gateEvery)
	defer t.Stop()
	for {
		g.check(time.Now())
		select {
		case <-ctx.Done():
			g.mu.Lock()
			defer g.mu.Unlock()
			g.stopLocked("node stopping")
			return
		case <-t.C:
		}
	}
}

// check takes one decision.
func (g *resultsGate) check(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.caughtUp == nil {
		if g.svc == nil {
			g.startLocked("no projector on this node")
		}
		return
	}
	if g.svc != nil {
		if !g.caughtUp(g.leave) {
			g.stopLocked("projection more than " + g.leave.String() + " behind")
			g.since = time.Time{}
		}
		return
	}
	switch {
	case g.caughtUp(0):
		g.startLocked("projection current")
	case g.caughtUp(g.join):
		if g.since.IsZero() {
			g.since = now
		} else if now.Sub(g.since) >= g.join {
			g.startLocked("projection within " + g.join.String())
		}
	default:
		g.since = time.Time{}
	}
}

func (g *resultsGate) startLocked(why string) {
	s, err := g.start()
	if err != nil {
		// Tried again at the next check.
		g.log.Error("results: start", "err", err)
		return
	}
	g.svc = s
	g.log.Info("results: joined the queue groups", "why", why)
	g.joinOne.Do(func() { close(g.joined) })
}

func (g *resultsGate) stopLocked(why string) {
	if g.svc == nil {
		return
	}
	if err := g.svc.Stop(); err != nil {
		g.log.Warn("results: stop", "err", err)
	}
	g.svc = nil
	g.log.Warn("results: left the queue groups", "why", why)
}

// serving reports whether the services are in their queue groups.
func (g *resultsGate) serving() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.svc != nil
}

// waitJoined waits for the first join, at most d; it reports whether it
// happened.
func (g *resultsGate) waitJoined(ctx context.Context, d time.Duration) bool {
	select {
	case <-g.joined:
		return true
	case <-ctx.Done():
	case <-time.After(d):
	}
	return false
}
