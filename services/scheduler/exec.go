package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// Fire is one execution to publish: a job, on a target, with its ids.
type Fire struct {
	ExecID      string
	RequestID   string
	Job         Manifest
	Target      Target
	Jitter      time.Duration
	InitiatedBy string // "api" or "schedule:<id>"
	InitiatedAt time.Time
	DeadlineAt  *time.Time
}

// ExecReply answers an exec: what was published where.
type ExecReply struct {
	ExecID      string   `json:"exec_id"`
	JobID       string   `json:"job_id"`
	Version     string   `json:"version"`
	TargetCount int      `json:"target_count"`
	Subjects    []string `json:"subjects"`
}

// Command builds the contract Command of a fire.
func (f Fire) Command() wire.Command {
	m := f.Job
	execID := f.ExecID
	c := wire.Command{
		ID:              m.ID,
		Version:         m.Version,
		RequestID:       f.RequestID,
		ExecID:          &execID,
		Shell:           m.Execute.Shell,
		Script:          m.Execute.Script,
		TimeoutSecs:     m.TimeoutSecs(),
		RunAs:           m.Execute.RunAs,
		Staleness:       wire.Staleness{Mode: "cached"},
		Cwd:             m.Execute.Cwd,
		ScriptObject:    m.Execute.ScriptObject,
		ScriptObjectSHA: m.Execute.ScriptObjectSHA256,
		Retry:           m.Execute.Retry,
	}
	if c.RunAs == "" {
		c.RunAs = "system"
	}
	if m.Execute.Staleness != nil && m.Execute.Staleness.Mode != "" {
		c.Staleness = *m.Execute.Staleness
	}
	if f.Jitter > 0 {
		j := ceilSeconds(f.Jitter)
		c.JitterSecs = &j
	}
	if f.DeadlineAt != nil {
		d := f.DeadlineAt.UTC()
		c.DeadlineAt = &d
	}
	return c
}

// Firer publishes executions. The execution record goes first (the
// projector turns it into the executions row), then the one Command to every
// subject of the target, through JetStream so that EXEC keeps it for agents
// that are offline. Message ids make a repeated publish of the same fire a
// no-op within the streams' duplicate windows.
type Firer struct {
	JS     jetstream.JetStream
	Agents *AgentCounter
}

// Publish publishes f and reports what it did.
func (p *Firer) Publish(ctx context.Context, f Fire) (ExecReply, error) {
	subjects := f.Target.Subjects()
	count := p.Agents.Count(ctx, f.Target)
	target, err := json.Marshal(f.Target)
	if err != nil {
		return ExecReply{}, fmt.Errorf("encode target: %w", err)
	}
	cmd := f.Command()
	rec := streams.ExecutionRecord{
		ExecID:      f.ExecID,
		RequestID:   f.RequestID,
		JobID:       f.Job.ID,
		Version:     f.Job.Version,
		InitiatedBy: f.InitiatedBy,
		InitiatedAt: f.InitiatedAt.UTC(),
		TargetCount: count,
		Target:      target,
		TimeoutSecs: cmd.TimeoutSecs,
		DeadlineAt:  cmd.DeadlineAt,
	}
	recData, err := json.Marshal(rec)
	if err != nil {
		return ExecReply{}, fmt.Errorf("encode execution record: %w", err)
	}
	cmdData, err := json.Marshal(cmd)
	if err != nil {
		return ExecReply{}, fmt.Errorf("encode command: %w", err)
	}
	if _, err := p.JS.Publish(ctx, streams.ExecutionSubject(f.ExecID), recData, jetstream.WithMsgID(f.ExecID)); err != nil {
		return ExecReply{}, fmt.Errorf("publish execution record %s: %w", f.ExecID, err)
	}
	// The subjects are published together and awaited together; each has
	// its own message id, since ids are unique per stream, not per subject.
	acks := make([]jetstream.PubAckFuture, 0, len(subjects))
	for _, s := range subjects {
		a, err := p.JS.PublishAsync(s, cmdData, jetstream.WithMsgID(f.ExecID+"/"+s))
		if err != nil {
			return ExecReply{}, fmt.Errorf("publish command %s on %s: %w", f.ExecID, s, err)
		}
		acks = append(acks, a)
	}
	for i, a := range acks {
		select {
		case <-a.Ok():
		case err := <-a.Err():
			return ExecReply{}, fmt.Errorf("publish command %s on %s: %w", f.ExecID, subjects[i], err)
		case <-ctx.Done():
			return ExecReply{}, fmt.Errorf("publish command %s on %s: %w", f.ExecID, subjects[i], ctx.Err())
		}
	}
	return ExecReply{ExecID: f.ExecID, JobID: f.Job.ID, Version: f.Job.Version, TargetCount: count, Subjects: subjects}, nil
}

// ExecRequest is the body of exec: the job from the path, a target and an
// optional jitter.
type ExecRequest struct {
	JobID  string        `json:"job_id"`
	Target *Target       `json:"target"`
	Jitter HumanDuration `json:"jitter"`
}

// ExecNow runs a job now: one exec_id, one request_id, one Command to every
// subject of the target.
func ExecNow(ctx context.Context, cat *Catalog, p *Firer, req ExecRequest, now time.Time) (ExecReply, error) {
	if req.Target == nil {
		return ExecReply{}, api.BadRequest(`empty target: want {"all":true}, {"groups":[…]} or {"pcs":[…]}`)
	}
	t := req.Target.normalized()
	if err := t.Validate(); err != nil {
		return ExecReply{}, err
	}
	jitter, err := req.Jitter.Duration()
	if err != nil {
		return ExecReply{}, api.BadRequest("invalid jitter: %v", err)
	}
	if jitter < 0 {
		return ExecReply{}, api.BadRequest("jitter must not be negative")
	}
	m, _, err := cat.GetJob(ctx, req.JobID)
	if err != nil {
		return ExecReply{}, err
	}
	rep, err := p.Publish(ctx, Fire{
		ExecID:      uuid.NewString(),
		RequestID:   uuid.NewString(),
		Job:         m,
		Target:      t,
		Jitter:      jitter,
		InitiatedBy: "api",
		InitiatedAt: now,
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoStreamResponse) {
			return rep, api.Unavailable("exec %s: %v", req.JobID, err)
		}
		return rep, err
	}
	return rep, nil
}

// scheduleNamespace roots the ids derived for scheduled ticks.
var scheduleNamespace = uuid.NewSHA1(uuid.NameSpaceOID, []byte("kanade/scheduler"))

// TickIDs are the exec_id and request_id of one tick of a schedule. Every
// node derives the same pair, so a tick published twice is one execution
// for the agents (request_id), EXEC and EXECUTIONS (message ids) and the
// executions table (exec_id).
func TickIDs(scheduleID string, tick time.Time) (execID, requestID string) {
	u := strconv.FormatInt(tick.Unix(), 10)
	execID = uuid.NewSHA1(scheduleNamespace, []byte("exec:"+scheduleID+":"+u)).String()
	requestID = uuid.NewSHA1(scheduleNamespace, []byte("request:"+scheduleID+":"+u)).String()
	return execID, requestID
}

// AliveWindow is how recent a heartbeat must be for an agent to count.
const AliveWindow = 2 * time.Minute

// AgentCounter counts the alive agents a target covers: agents with a
// heartbeat within AliveWindow (the agents table), group membership from
// the agent_groups bucket. The alive set is cached for a second so that a
// burst of fires costs one query.
type AgentCounter struct {
	DB     *store.DB // nil: no agents known
	Groups *GroupCache
	Now    func() time.Time
	Log    *slog.Logger

	mu    sync.Mutex
	alive []string
	at    time.Time
}

// Count is the target's alive agents, at least 1; for pcs, their number.
func (a *AgentCounter) Count(ctx context.Context, t Target) int {
	if !t.All && len(t.Groups) == 0 {
		return max(1, len(t.PCs))
	}
	alive := a.aliveAgents(ctx)
	if t.All {
		return max(1, len(alive))
	}
	covered := make(map[string]bool, len(t.PCs))
	for _, p := range t.PCs {
		covered[p] = true
	}
	want := make(map[string]bool, len(t.Groups))
	for _, g := range t.Groups {
		want[g] = true
	}
	for _, pc := range alive {
		if covered[pc] {
			continue
		}
		for _, g := range a.Groups.Of(pc) {
			if want[g] {
				covered[pc] = true
				break
			}
		}
	}
	return max(1, len(covered))
}

func (a *AgentCounter) aliveAgents(ctx context.Context) []string {
	if a == nil || a.DB == nil {
		return nil
	}
	now := a.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.at.IsZero() && now.Sub(a.at) < time.Second && now.After(a.at) {
		return a.alive
	}
	rows, err := a.DB.R.QueryContext(ctx, `SELECT pc_id FROM agents WHERE last_heartbeat >= ?`,
		store.FormatTime(now.Add(-AliveWindow)))
	if err != nil {
		a.Log.Warn("count alive agents", "err", err)
		return a.alive
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var pc string
		if err := rows.Scan(&pc); err != nil {
			a.Log.Warn("count alive agents", "err", err)
			return a.alive
		}
		out = append(out, pc)
	}
	if err := rows.Err(); err != nil {
		a.Log.Warn("count alive agents", "err", err)
		return a.alive
	}
	a.alive, a.at = out, now
	return out
}

// GroupCache mirrors the agent_groups bucket (key pc_id, value a JSON list
// of group names) through a watcher, so counting a group target costs no
// round trip.
type GroupCache struct {
	mu     sync.RWMutex
	groups map[string][]string
	synced chan struct{}
}

// Of is the groups of one PC.
func (g *GroupCache) Of(pc string) []string {
	if g == nil {
		return nil
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.groups[pc]
}

// WatchGroups starts mirroring kv until ctx ends; wg tracks the goroutine.
func WatchGroups(ctx context.Context, kv jetstream.KeyValue, wg *sync.WaitGroup, log *slog.Logger) (*GroupCache, error) {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", wire.BucketAgentGroups, err)
	}
	g := &GroupCache{groups: map[string][]string{}, synced: make(chan struct{})}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					close(g.synced)
					continue
				}
				g.apply(e, log)
			}
		}
	}()
	return g, nil
}

func (g *GroupCache) apply(e jetstream.KeyValueEntry, log *slog.Logger) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(g.groups, e.Key())
		return
	}
	var groups []string
	if err := json.Unmarshal(e.Value(), &groups); err != nil {
		log.Warn("agent_groups: value is not a list of names", "pc_id", e.Key(), "err", err)
		delete(g.groups, e.Key())
		return
	}
	g.groups[e.Key()] = groups
}
