package node

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/projector"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// Defaults of the results gate.
const (
	DefaultResultsJoinLag  = time.Second
	DefaultResultsLeaveLag = 10 * time.Second
	gateEvery              = 250 * time.Millisecond
)

// streamPos is how far the projection is in one stream.
type streamPos struct{ Applied, Last uint64 }

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
	caughtUp func(max time.Duration) bool
	// positions, when set, reports per stream the sequence the projection
	// has applied and the stream's last one as its leader says: the
	// projector's own view comes from its consumers, which a replica still
	// catching up after a crash can serve from stale data, so joining also
	// waits until the projection reaches the leaders' heads.
	positions func(context.Context) (map[string]streamPos, error)
	start     func() (stopper, error)
	// blocked, when set, says why the services must stay out whatever the
	// projection's freshness (a history gap no operator accepted); "" when
	// they may join.
	blocked func() string
	// conn is the services' connection: flushed after they stop, so the
	// server has seen them leave before the gate says they are out.
	conn        *nats.Conn
	join, leave time.Duration
	log         *slog.Logger

	mu       sync.Mutex
	svc      stopper
	blockLog string            // the last reason logged for staying out
	since    time.Time         // start of the current run of fresh checks
	target   map[string]uint64 // leaders' heads the projection must reach
	targetAt time.Time
	joined   chan struct{} // closed at the first join
	joinOne  sync.Once
}

func newResultsGate(caughtUp func(time.Duration) bool, start func() (stopper, error), conn *nats.Conn, join, leave time.Duration, log *slog.Logger) *resultsGate {
	if join <= 0 {
		join = DefaultResultsJoinLag
	}
	if leave < join {
		leave = max(DefaultResultsLeaveLag, join)
	}
	return &resultsGate{caughtUp: caughtUp, start: start, conn: conn, join: join, leave: leave, log: log, joined: make(chan struct{})}
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
	if g.blocked != nil {
		if why := g.blocked(); why != "" {
			g.stopLocked(why)
			g.since, g.target = time.Time{}, nil
			if why != g.blockLog {
				g.blockLog = why
				g.log.Error("results: staying out of the queue groups", "why", why)
			}
			return
		}
	}
	if g.caughtUp == nil {
		if g.svc == nil {
			g.startLocked("no projector on this node")
		}
		return
	}
	if g.svc != nil {
		if !g.caughtUp(g.leave) {
			g.stopLocked("projection more than " + g.leave.String() + " behind")
			g.since, g.target = time.Time{}, nil
		}
		return
	}
	switch {
	case g.caughtUp(0):
		g.joinLocked(now, "projection current")
	case g.caughtUp(g.join):
		if g.since.IsZero() {
			g.since = now
		} else if now.Sub(g.since) >= g.join {
			g.joinLocked(now, "projection within "+g.join.String())
		}
	default:
		g.since, g.target = time.Time{}, nil
	}
}

// joinLocked starts the services once the projection has reached the
// heads the streams' leaders reported, within join of asking; a head not
// reached in time is asked again.
func (g *resultsGate) joinLocked(now time.Time, why string) {
	if g.positions == nil {
		g.startLocked(why)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pos, err := g.positions(ctx)
	if err != nil {
		g.log.Warn("results: stream positions", "err", err)
		return
	}
	if g.target == nil || now.Sub(g.targetAt) > g.join {
		g.target, g.targetAt = map[string]uint64{}, now
		for name, p := range pos {
			g.target[name] = p.Last
		}
	}
	for name, last := range g.target {
		if pos[name].Applied < last {
			return
		}
	}
	g.target = nil
	g.startLocked(why)
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
	if err := g.conn.Flush(); err != nil {
		g.log.Warn("results: flush after stop", "err", err)
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
// A node kept out by blocked (a history gap) stops waiting at once.
func (g *resultsGate) waitJoined(ctx context.Context, d time.Duration) bool {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	end := time.After(d)
	for {
		select {
		case <-g.joined:
			return true
		case <-ctx.Done():
			return false
		case <-end:
			return false
		case <-t.C:
			if g.blocked != nil && g.blocked() != "" {
				return false
			}
		}
	}
}

// projectionPositions reads, for the streams the projector reads whole
// (RESULTS and EXECUTIONS: their consumers' filters are the streams'
// subjects), the sequence last applied and the stream's last sequence as
// its leader answers. An empty stream (all expired) has nothing to reach.
func projectionPositions(js jetstream.JetStream, p *projector.Projector) func(context.Context) (map[string]streamPos, error) {
	return func(ctx context.Context) (map[string]streamPos, error) {
		st, err := p.Status(ctx)
		if err != nil {
			return nil, err
		}
		out := map[string]streamPos{}
		for _, ss := range st.Streams {
			if ss.Stream != wire.StreamResults && ss.Stream != streams.StreamExecutions {
				continue
			}
			s, err := js.Stream(ctx, ss.Stream)
			if err != nil {
				return nil, fmt.Errorf("stream %s: %w", ss.Stream, err)
			}
			pos := streamPos{Applied: ss.LastApplied}
			if state := s.CachedInfo().State; state.Msgs > 0 {
				pos.Last = state.LastSeq
			}
			out[ss.Stream] = pos
		}
		return out, nil
	}
}
