// Package health answers the dashboard's home feeds: the fleet's health
// rollup (GET /api/health/fleet), the JetStream resources' usage (GET
// /api/jetstream/status), and the counts the gateway's /metrics exports.
// It reads the projection and the JetStream server; it writes nothing.
package health

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/results"
	"github.com/kanade-go/kanade/store"
)

// AliveWindow is how recent a heartbeat must be for an agent to be active
// (upstream's ALIVE_THRESHOLD).
const AliveWindow = 2 * time.Minute

// Statuses of the rollup.
const (
	StatusOK       = "ok"
	StatusUnknown  = "unknown"
	StatusDegraded = "degraded"
)

// Fleet is the reply of GET /api/health/fleet.
type Fleet struct {
	Status        string        `json:"status"`
	Agents        AgentCounts   `json:"agents"`
	JetStream     JetStreamRoll `json:"jetstream"`
	RecentResults RecentResults `json:"recent_results"`
	ObservedAt    time.Time     `json:"observed_at"`
}

// AgentCounts: known rows, active by heartbeat, the rest stale.
type AgentCounts struct {
	Known  int64 `json:"known"`
	Active int64 `json:"active"`
	Stale  int64 `json:"stale"`
}

// JetStreamRoll says whether every required resource exists.
type JetStreamRoll struct {
	AllOK   bool     `json:"all_ok"`
	Healthy int      `json:"healthy"`
	Total   int      `json:"total"`
	Missing []string `json:"missing"`
}

// RecentResults counts the results of the window. Running and Skipped are
// additions to upstream's shape (readers ignore unknown keys).
type RecentResults struct {
	WindowHours int   `json:"window_hours"`
	Total       int64 `json:"total"`
	Failed      int64 `json:"failed"`
	Running     int64 `json:"running"`
	Skipped     int64 `json:"skipped"`
}

// Checker computes the rollup.
type Checker struct {
	DB  *store.DB
	JS  jetstream.JetStream
	Log *slog.Logger
	Now func() time.Time
	// Alive is how recent a heartbeat must be (default AliveWindow).
	Alive time.Duration
	// DegradedBelow is the fraction of known agents that must be active
	// for the fleet to be ok (default 0.5: degraded when most stopped).
	// Negative keeps upstream's rule: degraded only when none is active.
	DegradedBelow float64

	// The 24 h counts read every row of the window: kept for recentTTL, so
	// dashboards and scrapers polling together cost one scan.
	mu       sync.Mutex
	recentAt time.Time
	recentV  RecentResults
}

// recentTTL is how long the 24 h counts are reused.
const recentTTL = 5 * time.Second

func (c *Checker) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c *Checker) alive() time.Duration {
	if c.Alive <= 0 {
		return AliveWindow
	}
	return c.Alive
}

// Fleet computes the rollup. It never fails: a query that does, counts 0
// (and is logged), as upstream's.
func (c *Checker) Fleet(ctx context.Context) Fleet {
	now := c.now().UTC()
	f := Fleet{ObservedAt: now, RecentResults: RecentResults{WindowHours: 24}}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); f.JetStream = c.jetStreamRoll(ctx) }()
	go func() {
		defer wg.Done()
		f.Agents = c.agents(ctx, now)
		f.RecentResults = c.recent(ctx, now)
	}()
	wg.Wait()
	f.Status = c.rollup(f)
	return f
}

// rollup is upstream's order: a missing resource, then no agents known,
// then too few active.
func (c *Checker) rollup(f Fleet) string {
	switch {
	case !f.JetStream.AllOK:
		return StatusDegraded
	case f.Agents.Known == 0:
		return StatusUnknown
	case f.Agents.Active == 0:
		return StatusDegraded
	}
	frac := c.DegradedBelow
	if frac == 0 {
		frac = 0.5
	}
	if frac > 0 && float64(f.Agents.Active) < frac*float64(f.Agents.Known) {
		return StatusDegraded
	}
	return StatusOK
}

func (c *Checker) agents(ctx context.Context, now time.Time) AgentCounts {
	var a AgentCounts
	if c.DB == nil {
		return a
	}
	err := c.DB.R.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(last_heartbeat >= ?), 0) FROM agents`,
		store.FormatTime(now.Add(-c.alive()))).Scan(&a.Known, &a.Active)
	if err != nil {
		c.logger().Warn("health: count agents", "err", err)
		return AgentCounts{}
	}
	a.Stale = max(a.Known-a.Active, 0)
	return a
}

// recent counts on started_at, which is indexed (upstream's recorded_at is
// not, here); in-flight rows are in total and running, never in failed;
// skipped results (a deliberate non-run) are not failures.
func (c *Checker) recent(ctx context.Context, now time.Time) RecentResults {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.recentAt.IsZero() && now.Sub(c.recentAt) >= 0 && now.Sub(c.recentAt) < recentTTL {
		return c.recentV
	}
	r := c.countRecent(ctx, now)
	c.recentAt, c.recentV = now, r
	return r
}

// Recent counts the 24 h window before now, uncached.
func (c *Checker) Recent(ctx context.Context, now time.Time) RecentResults {
	return c.countRecent(ctx, now)
}

func (c *Checker) countRecent(ctx context.Context, now time.Time) RecentResults {
	r := RecentResults{WindowHours: 24}
	if c.DB == nil {
		return r
	}
	err := c.DB.R.QueryRowContext(ctx, `SELECT COUNT(*),
			COALESCE(SUM(exit_code IS NOT NULL AND exit_code <> 0 AND skipped = 0), 0),
			COALESCE(SUM(finished_at IS NULL), 0),
			COALESCE(SUM(skipped), 0)
		FROM execution_results WHERE started_at >= ?`,
		store.FormatTime(now.Add(-24*time.Hour))).Scan(&r.Total, &r.Failed, &r.Running, &r.Skipped)
	if err != nil {
		c.logger().Warn("health: count recent results", "err", err)
		return RecentResults{WindowHours: 24}
	}
	return r
}

func (c *Checker) jetStreamRoll(ctx context.Context) JetStreamRoll {
	roll := JetStreamRoll{Total: len(FleetResources), Missing: []string{}}
	for _, p := range probeAll(ctx, c.JS, FleetResources) {
		if p.Exists {
			roll.Healthy++
		} else {
			roll.Missing = append(roll.Missing, p.Name)
		}
	}
	roll.AllOK = len(roll.Missing) == 0
	return roll
}

// Executions counts executions by the status the API shows (read-time:
// completed once every target answered, expired past the deadline).
func (c *Checker) Executions(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{"pending": 0, "running": 0, "completed": 0, "expired": 0}
	if c.DB == nil {
		return out, nil
	}
	rows, err := c.DB.R.QueryContext(ctx, `SELECT `+results.ExecutionStatusSQL+` AS s, COUNT(*) FROM executions GROUP BY s`,
		store.FormatTime(c.now()))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}

func (c *Checker) logger() *slog.Logger {
	if c.Log == nil {
		return slog.Default()
	}
	return c.Log
}
