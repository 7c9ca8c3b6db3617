package sim

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/wire"
)

// gates are the checks a real agent makes before running a Command
// (upstream's command_is_gated), in its order: the version pin
// (script_current.{id} exists and differs from the Command's version: 124),
// then revoke (script_status.{id} is exactly REVOKED: 126). The deadline
// (125) is checked by execute. Like an agent, the fleet opens the buckets
// once, at its first Command, and skips a check whose bucket is missing.
//
// A broadcast reaches every agent of the fleet at once; the first check
// of a request is shared by the fleet's agents (they would all read the
// same keys), so a big fleet costs two reads per Command, not per agent.
// The second check, after a jitter, reads again.
type gates struct {
	open            sync.Once
	status, current jetstream.KeyValue

	mu   sync.Mutex
	memo map[string]*verdictMemo // request_id -> the first check's verdict
}

type verdictMemo struct {
	once sync.Once
	at   time.Time
	v    verdict
}

// verdict is a gate's decision: exit 0 runs the Command.
type verdict struct {
	exit   int64
	reason string
}

// memoTTL is how long a request's first verdict is kept for the agents
// that receive it after the first.
const memoTTL = time.Minute

func (g *gates) buckets(f *Fleet) {
	g.open.Do(func() {
		ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
		defer cancel()
		var err error
		js := f.js
		if js == nil && len(f.agents) > 0 {
			// Agents on their own credentials only (Options.AgentConn
			// without Conn): one of them reads, as any agent may.
			js = f.agents[0].js
		}
		if g.current, err = js.KeyValue(ctx, wire.BucketScriptCurrent); err != nil {
			f.log.Warn("sim: no script_current bucket; the version pin check is skipped", "err", err)
			g.current = nil
		}
		if g.status, err = js.KeyValue(ctx, wire.BucketScriptStatus); err != nil {
			f.log.Warn("sim: no script_status bucket; the revoke check is skipped", "err", err)
			g.status = nil
		}
	})
}

// check reads the gates for cmd now.
func (g *gates) check(ctx context.Context, f *Fleet, cmd wire.Command) verdict {
	g.buckets(f)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if g.current != nil {
		if e, err := g.current.Get(ctx, cmd.ID); err == nil && string(e.Value()) != cmd.Version {
			return verdict{wire.ExitVersionPin, fmt.Sprintf("skipped: version pin mismatch (script_current[%s] = %s, command version %s)",
				cmd.ID, e.Value(), cmd.Version)}
		}
	}
	if g.status != nil {
		if e, err := g.status.Get(ctx, cmd.ID); err == nil && string(e.Value()) == wire.ScriptRevoked {
			return verdict{wire.ExitRevoked, fmt.Sprintf("skipped: command was revoked (script_status[%s] = revoked)", cmd.ID)}
		}
	}
	return verdict{}
}

// first is the request's first check, shared by the fleet's agents.
func (g *gates) first(ctx context.Context, f *Fleet, cmd wire.Command) verdict {
	now := time.Now()
	g.mu.Lock()
	if g.memo == nil {
		g.memo = map[string]*verdictMemo{}
	}
	m := g.memo[cmd.RequestID]
	if m == nil {
		if len(g.memo) >= 1024 {
			for id, old := range g.memo {
				if now.Sub(old.at) > memoTTL {
					delete(g.memo, id)
				}
			}
		}
		m = &verdictMemo{at: now}
		g.memo[cmd.RequestID] = m
	}
	g.mu.Unlock()
	m.once.Do(func() { m.v = g.check(ctx, f, cmd) })
	return m.v
}

// gated applies the gates to one agent's run of cmd; true when the
// Command was skipped (its synthetic result is published).
func (a *agent) gated(ctx context.Context, cmd wire.Command, r *run, startedAt time.Time, first bool) bool {
	var v verdict
	if first {
		v = a.f.gates.first(ctx, a.f, cmd)
	} else {
		v = a.f.gates.check(ctx, a.f, cmd)
	}
	if v.exit == 0 {
		return false
	}
	fmt.Fprintln(r.stderr, v.reason)
	a.finish(cmd, r, v.exit, startedAt, true)
	return true
}
