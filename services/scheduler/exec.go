package scheduler

import (
	"context"
	"encoding/json"
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

// Firer publishes executions: the execution record (the projector turns it
// into the executions row) and the one Command to every subject of the
// target, through JetStream so that EXEC keeps it for agents
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
	// The record and the Commands go out together and are awaited
	// together: one round trip. The projector counts results that arrive
	// before their record, so the order does not matter. Each message has
	// its own id, since ids are unique per stream, not per subject.
	subjs := append([]string{streams.ExecutionSubject(f.ExecID)}, subjects...)
	acks := make([]jetstream.PubAckFuture, 0, len(subjs))
	for i, s := range subjs {
		data, id := cmdData, f.ExecID+"/"+s
		if i == 0 {
			data, id = recData, f.ExecID
		}
		a, err := p.JS.PublishAsync(s, data, jetstream.WithMsgID(id))
		if err != nil {
			return ExecReply{}, fmt.Errorf("publish exec %s on %s: %w", f.ExecID, s, err)
		}
		acks = append(acks, a)
	}
	for i, a := range acks {
		select {
		case <-a.Ok():
		case err := <-a.Err():
			return ExecReply{}, fmt.Errorf("publish exec %s on %s: %w", f.ExecID, subjs[i], err)
		case <-ctx.Done():
			return ExecReply{}, fmt.Errorf("publish exec %s on %s: %w", f.ExecID, subjs[i], ctx.Err())
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
		// NATS or JetStream is not answering: the client may retry (a new
		// exec; nothing reached an agent, or agents de-duplicate).
		return rep, api.Unavailable("exec %s: %v", req.JobID, err)
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
	DB     *store.DB         // nil: no agents known
	Groups *Mirror[[]string] // agent_groups: pc_id -> groups
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
		groups, _ := a.Groups.Get(pc)
		for _, g := range groups {
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
