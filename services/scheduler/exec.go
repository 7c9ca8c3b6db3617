package scheduler

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/services/groups"
	"github.com/kanade-go/kanade/signing"
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
	Retry       *wire.Retry // a schedule's on_failure.retry; nil: the manifest's
}

// EndsBy is when the fire's last run must have ended, the execution
// record's deadline_at (past it the API shows an unfinished execution
// expired): the Command's deadline, or the initiation plus the jitter,
// then the run timeout and the projector's reaper margin, max(2 min,
// timeout/2). Agents read their own Command's deadline_at, not this.
func (f Fire) EndsBy(timeoutSecs int64) *time.Time {
	start := f.InitiatedAt.Add(f.Jitter)
	if f.DeadlineAt != nil {
		start = *f.DeadlineAt
	}
	timeout := time.Duration(timeoutSecs) * time.Second
	t := start.Add(timeout + max(2*time.Minute, timeout/2)).UTC()
	return &t
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
		Staleness:       m.CommandStaleness(),
		Cwd:             m.Execute.Cwd,
		ScriptObject:    m.Execute.ScriptObject,
		ScriptObjectSHA: m.Execute.ScriptObjectSHA256,
		Retry:           m.Execute.Retry,
	}
	if c.RunAs == "" {
		c.RunAs = "system"
	}
	if f.Retry != nil {
		c.Retry = f.Retry
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
	Log    *slog.Logger
	// Pins, when set, is the script_current bucket: each fire pins its
	// job's version there before publishing, as upstream's exec and
	// scheduler do, so agents skip (124) a Command of another version.
	Pins jetstream.KeyValue
	// RetryFor bounds how long Publish keeps re-sending the messages that
	// failed (default: until half a second before the context's deadline,
	// else 5 s).
	RetryFor time.Duration
	// Signer signs every Command publish, retries included (nil: unsigned,
	// as upstream without a key).
	Signer *signing.Signer
	// Envelopes sends v2 envelopes to the PCs that report them (nil: bare
	// Commands only, as upstream).
	Envelopes *signing.Envelopes
	// Audit records each scheduled fire (actor "scheduler") before it is
	// published; nil records nothing. Execs through the API are recorded
	// by the API itself.
	Audit api.Auditor
}

// ackWait bounds the wait for one round of acks: a lost ack is a failure
// to retry, not a hang.
const ackWait = 2 * time.Second

// pubMsg is one message of a fire, with its de-duplication id; a command
// is signed at each publish.
type pubMsg struct {
	subject, id string
	data        []byte
	command     bool
}

// Publish publishes f and reports what it did. The messages that fail (an
// error, no ack) are sent again with the same ids, the ones that went out
// are not, until all are stored or RetryFor has passed: the streams drop a
// copy already stored, so no agent gets the Command twice, which a new exec
// from a client retrying would do (new ids) to the agents already reached.
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
		DeadlineAt:  f.EndsBy(cmd.TimeoutSecs),
	}
	recData, err := json.Marshal(rec)
	if err != nil {
		return ExecReply{}, fmt.Errorf("encode execution record: %w", err)
	}
	cmdData, err := api.Marshal(cmd) // a script of "<" keeps its size: agents get it whole

	if err != nil {
		return ExecReply{}, fmt.Errorf("encode command: %w", err)
	}
	if err := p.pin(ctx, f.Job); err != nil {
		return ExecReply{}, err
	}
	// The record and the Commands go out together and are awaited
	// together: one round trip. The projector counts results that arrive
	// before their record, so the order does not matter. Each message has
	// its own id, since ids are unique per stream, not per subject.
	msgs := []pubMsg{{subject: streams.ExecutionSubject(f.ExecID), id: f.ExecID, data: recData}}
	now := time.Now()
	for _, s := range subjects {
		data, err := p.Envelopes.Body(s, cmdData, now)
		if err != nil {
			return ExecReply{}, fmt.Errorf("encode command for %s: %w", s, err)
		}
		msgs = append(msgs, pubMsg{subject: s, id: f.ExecID + "/" + s, data: data, command: true})
	}
	// Give up only shortly before the caller's deadline: a 503 for
	// messages whose acks were merely slow (an fsync under load) makes the
	// client retry with new ids, the double run this loop exists to avoid.
	giveUp := time.Now().Add(5 * time.Second)
	if p.RetryFor > 0 {
		giveUp = time.Now().Add(p.RetryFor)
	} else if dl, ok := ctx.Deadline(); ok {
		giveUp = dl.Add(-500 * time.Millisecond)
	}
	all := slices.Clone(msgs)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		failed := p.publishRound(ctx, msgs)
		if len(failed) == 0 {
			return ExecReply{ExecID: f.ExecID, JobID: f.Job.ID, Version: f.Job.Version, TargetCount: count, Subjects: subjects}, nil
		}
		if ctx.Err() != nil || time.Now().Add(wait).After(giveUp) {
			return ExecReply{}, publishError(f.ExecID, all, failed)
		}
		for _, fm := range failed {
			p.log().Warn("publish failed; retrying with the same ids", "exec_id", f.ExecID,
				"subject", fm.msg.subject, "err", fm.err)
		}
		select {
		case <-ctx.Done():
			return ExecReply{}, publishError(f.ExecID, all, failed)
		case <-time.After(wait):
		}
		msgs = msgs[:0]
		for _, fm := range failed {
			msgs = append(msgs, fm.msg)
		}
	}
}

type failedMsg struct {
	msg pubMsg
	err error
}

// publishRound publishes msgs and waits for their acks; it returns those
// that failed or were not acked within ackWait.
func (p *Firer) publishRound(ctx context.Context, msgs []pubMsg) []failedMsg {
	var failed []failedMsg
	acks := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		msg := &nats.Msg{Subject: m.subject, Data: m.data}
		if m.command {
			if err := p.Signer.Sign(msg); err != nil {
				failed = append(failed, failedMsg{m, err})
				continue
			}
		}
		a, err := p.JS.PublishMsgAsync(msg, jetstream.WithMsgID(m.id))
		if err != nil {
			failed = append(failed, failedMsg{m, err})
			continue
		}
		acks[i] = a
	}
	actx, cancel := context.WithTimeout(ctx, ackWait)
	defer cancel()
	for i, a := range acks {
		if a == nil {
			continue
		}
		if err := awaitAck(actx, a); err != nil {
			failed = append(failed, failedMsg{msgs[i], err})
		}
	}
	return failed
}

// awaitAck waits for a's ack until ctx ends; an ack already in counts
// even then.
func awaitAck(ctx context.Context, a jetstream.PubAckFuture) error {
	select {
	case <-a.Ok():
		return nil
	case err := <-a.Err():
		return err
	case <-ctx.Done():
	}
	select {
	case <-a.Ok():
		return nil
	case err := <-a.Err():
		return err
	default:
		return fmt.Errorf("no ack: %w", ctx.Err())
	}
}

// publishError says which subjects did not get the fire, and which did.
func publishError(execID string, all []pubMsg, failed []failedMsg) error {
	parts := make([]string, len(failed))
	bad := make(map[string]bool, len(failed))
	for i, fm := range failed {
		parts[i] = fmt.Sprintf("%s (%v)", fm.msg.subject, fm.err)
		bad[fm.msg.subject] = true
	}
	var ok []string
	for _, m := range all {
		if !bad[m.subject] {
			ok = append(ok, m.subject)
		}
	}
	if len(ok) == 0 {
		return fmt.Errorf("publish exec %s failed on %s", execID, strings.Join(parts, ", "))
	}
	return fmt.Errorf("publish exec %s reached %s but failed on %s", execID, strings.Join(ok, ", "), strings.Join(parts, ", "))
}

// pin writes the job's version to script_current (raw bytes, as agents
// read it) unless it is there already.
func (p *Firer) pin(ctx context.Context, m Manifest) error {
	if p.Pins == nil {
		return nil
	}
	if e, err := p.Pins.Get(ctx, m.ID); err == nil && string(e.Value()) == m.Version {
		return nil
	}
	if _, err := p.Pins.Put(ctx, m.ID, []byte(m.Version)); err != nil {
		return fmt.Errorf("pin script_current %s: %w", m.ID, err)
	}
	return nil
}

func (p *Firer) log() *slog.Logger {
	if p.Log == nil {
		return slog.Default()
	}
	return p.Log
}

// ExecRequest is the body of exec: the job from the path, a target and an
// optional jitter.
type ExecRequest struct {
	JobID  string        `json:"job_id"`
	Target *Target       `json:"target"`
	Jitter HumanDuration `json:"jitter"`
	// InitiatedBy is who asked (the caller's actor, as upstream keeps
	// it); "" records "api".
	InitiatedBy string `json:"-"`
}

// ExecNow runs a job now: one exec_id, one request_id, one Command to every
// subject of the target.
func ExecNow(ctx context.Context, cat *Catalog, p *Firer, req ExecRequest, now time.Time) (ExecReply, error) {
	// The job first: an unknown one is a 404 whatever the body says.
	m, _, err := cat.GetJob(ctx, req.JobID)
	if err != nil {
		return ExecReply{}, err
	}
	if req.Target == nil {
		return ExecReply{}, api.BadRequest(`empty target: want {"all":true}, {"groups":[…]} or {"pcs":[…]}`)
	}
	t := req.Target.normalized()
	if err := t.Validate(); err != nil {
		return ExecReply{}, err
	}
	if err := p.Agents.checkResolves(ctx, t); err != nil {
		return ExecReply{}, err
	}
	jitter, err := req.Jitter.Duration()
	if err != nil {
		return ExecReply{}, api.BadRequest("invalid jitter: %v", err)
	}
	if jitter < 0 {
		return ExecReply{}, api.BadRequest("jitter must not be negative")
	}
	rep, err := p.Publish(ctx, Fire{
		ExecID:      uuid.NewString(),
		RequestID:   uuid.NewString(),
		Job:         m,
		Target:      t,
		Jitter:      jitter,
		InitiatedBy: cmp.Or(req.InitiatedBy, "api"),
		InitiatedAt: now,
	})
	if err != nil {
		// Publish already retried what failed with this exec's ids; a
		// retry by the client is a new exec, which the subjects reached
		// (named in the error) get a second time.
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
	// Roster, when set, is the one resolution of targets (groups.Roster:
	// agent_groups ∪ agent_groups_derived, alive agents); DB and Groups
	// are then unused.
	Roster *groups.Roster
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
	if a != nil && a.Roster != nil {
		return a.Roster.Count(ctx, t.All, t.Groups, t.PCs)
	}
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
	if !a.at.IsZero() && now.Sub(a.at) < time.Second && !now.Before(a.at) {
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
	slices.Sort(out) // the roster's order; sorted once per refresh
	a.alive, a.at = out, now
	return out
}

// checkResolves refuses a target naming a group that has no member at all
// (online or not): a misspelled group would otherwise be published to a
// subject nobody listens on, and its execution never complete.
func (a *AgentCounter) checkResolves(ctx context.Context, t Target) error {
	if a == nil || a.Roster == nil || len(t.Groups) == 0 {
		return nil
	}
	empty := a.Roster.EmptyGroups(ctx, t.Groups)
	if len(empty) == 0 {
		return nil
	}
	quoted := make([]string, len(empty))
	for i, g := range empty {
		quoted[i] = strconv.Quote(g)
	}
	if len(empty) == 1 {
		return api.BadRequest("target resolves to no PC: group %s has no members", quoted[0])
	}
	return api.BadRequest("target resolves to no PC: groups %s have no members", strings.Join(quoted, ", "))
}
