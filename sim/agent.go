package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/wire"
)

// seenTTL is how long an agent remembers a request_id it ran.
const seenTTL = 6 * time.Hour

// ackWait bounds one publish attempt. Generous: with fsync on every write
// a burst of thousands of results queues for seconds, and retrying a
// queued publish only adds load, and, without msg ids (as real agents
// publish), a duplicate in the stream.
const ackWait = 15 * time.Second

var (
	errKilled   = errors.New("killed")
	errTimedOut = errors.New("timed out")
)

// agent is one simulated pc_id.
type agent struct {
	f      *Fleet
	pcID   string
	groups []string
	// nc and js are the agent's connection: the fleet's, or its own
	// (Options.AgentConn).
	nc *nats.Conn
	js jetstream.JetStream

	mu   sync.Mutex
	seen map[string]time.Time // request_id -> when received
	runs map[string]*run      // result_id -> run, kept KeepFinished after it ends
}

// run is one Command running (or recently run) on one agent.
type run struct {
	resultID string
	execID   string // "" for an ad-hoc Command
	stdout   *stream
	stderr   *stream
	cancel   context.CancelCauseFunc

	mu       sync.Mutex
	running  bool
	finished time.Time
}

func (r *run) state() (running bool, finished time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running, r.finished
}

func (r *run) end() {
	r.mu.Lock()
	r.running, r.finished = false, time.Now()
	r.mu.Unlock()
}

// now is a wire timestamp: UTC, millisecond precision.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// accept takes a Command once per request_id and starts running it.
func (a *agent) accept(cmd wire.Command, received time.Time) {
	a.mu.Lock()
	if _, dup := a.seen[cmd.RequestID]; dup {
		a.mu.Unlock()
		a.f.c.duplicates.Add(1)
		return
	}
	a.seen[cmd.RequestID] = received
	r := &run{resultID: uuid.NewString(), stdout: newStream(), stderr: newStream(), running: true}
	if cmd.ExecID != nil {
		r.execID = *cmd.ExecID
	}
	ctx, cancel := context.WithCancelCause(a.f.ctx)
	r.cancel = cancel
	a.runs[r.resultID] = r
	a.mu.Unlock()

	a.f.c.commands.Add(1)
	a.f.c.running.Add(1)
	if !a.f.spawn(func() {
		defer cancel(nil)
		defer a.f.c.running.Add(-1)
		a.execute(ctx, cmd, r, received)
	}) {
		cancel(nil)
		a.f.c.running.Add(-1)
	}
}

// refuse publishes an enforcing agent's refusal of cmd instead of running
// it. The request_id is not consumed: a correctly signed copy still runs,
// and one already run is not refused again.
func (a *agent) refuse(cmd wire.Command, v signing.Verdict) {
	a.mu.Lock()
	_, dup := a.seen[cmd.RequestID]
	a.mu.Unlock()
	if dup {
		a.f.c.duplicates.Add(1)
		return
	}
	res := signing.Refusal(cmd, a.pcID, v, now())
	a.f.c.refused.Add(1)
	a.f.spawn(func() {
		if a.f.publish(a.js, wire.Results(cmd.RequestID), res, res.ResultID) {
			a.f.c.results.Add(1)
		}
	})
}

// execute runs one accepted Command and publishes what happened.
func (a *agent) execute(ctx context.Context, cmd wire.Command, r *run, received time.Time) {
	defer r.end()
	startedAt := now()
	if a.gated(ctx, cmd, r, startedAt, true) {
		return
	}
	switch {
	case cmd.DeadlineAt != nil && received.After(*cmd.DeadlineAt):
		fmt.Fprintf(r.stderr, "deadline_at %s passed before the Command was received (%s): not run\n",
			cmd.DeadlineAt.UTC().Format(time.RFC3339), received.UTC().Format(time.RFC3339))
		a.finish(cmd, r, wire.ExitDeadline, startedAt, true)
		return
	case !a.supports(cmd.Shell):
		fmt.Fprintf(r.stderr, "shell %q is not supported on this agent\n", cmd.Shell)
		a.finish(cmd, r, wire.ExitUnsupported, startedAt, true)
		return
	}

	if cmd.JitterSecs != nil && *cmd.JitterSecs > 0 {
		t := time.NewTimer(rand.N(time.Duration(*cmd.JitterSecs)*time.Second + 1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		if ctx.Err() == nil && a.gated(ctx, cmd, r, now(), false) {
			return
		}
	}
	release := a.admit(ctx) // max_local_concurrent, from the layered config
	defer release()
	if ctx.Err() == nil {
		startedAt = now()
		if r.execID != "" {
			ev := wire.EventStarted{
				ResultID: r.resultID, RequestID: cmd.RequestID, ExecID: r.execID, PCID: a.pcID,
				StartedAt: startedAt, ManifestID: optional(cmd.ID), Version: optional(cmd.Version),
			}
			if !a.f.publish(a.js, wire.Started(r.execID, a.pcID), ev, "started-"+r.resultID) {
				return // the fleet is stopping
			}
			a.f.c.started.Add(1)
		}
	}

	runCtx, cancelTimeout := ctx, context.CancelFunc(func() {})
	if cmd.TimeoutSecs > 0 {
		runCtx, cancelTimeout = context.WithTimeoutCause(ctx, time.Duration(cmd.TimeoutSecs)*time.Second, errTimedOut)
	}
	var exit int64
	if ctx.Err() == nil {
		if a.f.o.Exec {
			exit = a.execSh(runCtx, cmd, r)
		} else {
			exit = a.synthetic(runCtx, cmd, r)
		}
	}
	cause := context.Cause(runCtx)
	cancelTimeout()
	switch {
	case errors.Is(cause, errKilled):
		exit = wire.ExitKilled
		fmt.Fprintf(r.stderr, "\nkanade: killed by kill.%s\n", r.execID)
	case errors.Is(cause, errTimedOut):
		exit = wire.ExitKilled
		fmt.Fprintf(r.stderr, "\nkanade: timed out after %ds\n", cmd.TimeoutSecs)
	case a.f.ctx.Err() != nil:
		return // switched off mid-run: nothing is published
	}
	a.finish(cmd, r, exit, startedAt, false)
}

// skipExit reports whether exit is a synthetic code of a deliberate
// non-run, which agents mark skipped: 122 unsupported, 124 version pin, 125
// deadline passed, 126 revoked, 127 staleness. Never 123 (refused, a
// failure).
func skipExit(exit int64) bool {
	switch exit {
	case wire.ExitUnsupported, wire.ExitVersionPin, wire.ExitDeadline, wire.ExitRevoked, wire.ExitStaleness:
		return true
	}
	return false
}

// finish ends the run and publishes its result. notRun says the agent
// decided not to run the Command: its synthetic exit code may mark the
// result skipped; a script that ran and exited 125 is not.
func (a *agent) finish(cmd wire.Command, r *run, exit int64, startedAt time.Time, notRun bool) {
	r.end()
	res := wire.ExecResult{
		ResultID: r.resultID, RequestID: cmd.RequestID, PCID: a.pcID, ExitCode: exit,
		StartedAt: startedAt, FinishedAt: now(), ManifestID: optional(cmd.ID),
		Skipped: notRun && skipExit(exit),
	}
	if r.execID != "" {
		res.ExecID = &r.execID
	}
	var ok bool
	if res.Stdout, res.StdoutObject, ok = a.output(cmd, r.stdout, "stdout"); !ok {
		return
	}
	if res.Stderr, res.StderrObject, ok = a.output(cmd, r.stderr, "stderr"); !ok {
		return
	}
	if a.f.publish(a.js, wire.Results(cmd.RequestID), res, r.resultID) {
		a.f.c.results.Add(1)
		a.logf("command %s request_id=%s result_id=%s finished exit_code=%d skipped=%v", cmd.ID, cmd.RequestID, r.resultID, exit, res.Skipped)
	}
}

// output is a stream's captured text for the result, or, above the
// threshold, the key it was moved to in the object store: the request's
// key, or a suffixed one when another agent of the same request took it.
func (a *agent) output(cmd wire.Command, s *stream, name string) (string, *string, bool) {
	text := s.Captured()
	if len(text) <= ObjectThreshold {
		return text, nil, true
	}
	key, ok := a.f.putObject(a.js, wire.OutputObjectKey(cmd.RequestID, name), []byte(text))
	if !ok {
		return "", nil, false
	}
	return "", &key, true
}

// supports reports whether this agent can run the shell: with Exec only
// sh (this OS); synthetic runs accept every shell of the contract.
func (a *agent) supports(shell string) bool {
	if a.f.o.Exec {
		return shell == wire.ShellSh
	}
	return wire.ValidShell(shell)
}

// kill stops this agent's runs of execID.
func (a *agent) kill(execID string) {
	if execID == "" {
		return
	}
	a.mu.Lock()
	var hit []*run
	for _, r := range a.runs {
		if running, _ := r.state(); running && r.execID == execID {
			hit = append(hit, r)
		}
	}
	a.mu.Unlock()
	for _, r := range hit {
		r.cancel(errKilled)
		a.f.c.kills.Add(1)
	}
}

// answerTail replies to job.tail.{pc_id}.
func (a *agent) answerTail(m *nats.Msg) {
	var req wire.JobTailRequest
	_ = json.Unmarshal(m.Data, &req) // a bad request is an unknown id
	a.mu.Lock()
	r := a.runs[req.ResultID]
	a.mu.Unlock()
	reply := []byte(`{"found":false}`)
	if r != nil {
		running, _ := r.state()
		out, outCut := r.stdout.Tail()
		errOut, errCut := r.stderr.Tail()
		reply, _ = json.Marshal(wire.JobTailReply{
			Found: true, Running: running, Stdout: out, Stderr: errOut,
			StdoutTruncated: outCut, StderrTruncated: errCut,
		})
	}
	if m.Respond(reply) == nil {
		a.f.c.tails.Add(1)
	}
}

// beat is a Heartbeat. A periodic one (full) reports the command keys,
// enforcement and protocols of an agent with a keyring; a ping's answer
// omits them, as upstream's does.
func (a *agent) beat(full bool) []byte {
	h := wire.Heartbeat{
		PCID: a.pcID, At: now(), AgentVersion: a.f.o.AgentVersion,
		Hostname: &a.pcID, OSFamily: &a.f.o.OSFamily,
	}
	if ring := a.f.o.Keyring; full && ring != nil {
		enforcing := ring.Len() > 0
		h.CommandKeys, h.Enforcing = ring.CommandKeys(), &enforcing
		if h.CommandKeys == nil {
			h.CommandKeys = []string{}
		}
		h.CommandProtocols = []string{signing.ProtocolLegacy, signing.KindV2}
	}
	b, _ := json.Marshal(h)
	return b
}

// heartbeat publishes on heartbeat.{pc_id} (core NATS, no stream).
func (a *agent) heartbeat() {
	if a.nc.Publish(wire.HeartbeatSubject(a.pcID), a.beat(true)) == nil {
		a.f.c.heartbeats.Add(1)
	}
}

// answerPing replies to agents.{pc_id}.ping with a Heartbeat.
func (a *agent) answerPing(m *nats.Msg) {
	if m.Respond(a.beat(false)) == nil {
		a.f.c.pings.Add(1)
	}
}

// sweep forgets runs finished more than KeepFinished ago and old request ids.
func (a *agent) sweep(t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, r := range a.runs {
		if running, fin := r.state(); !running && t.Sub(fin) > a.f.o.KeepFinished {
			delete(a.runs, id)
		}
	}
	for id, at := range a.seen {
		if t.Sub(at) > seenTTL {
			delete(a.seen, id)
		}
	}
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// spawn runs fn on a goroutine the fleet waits for; false once stopping.
func (f *Fleet) spawn(fn func()) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		fn()
	}()
	return true
}

// retry calls try until it succeeds, with a bounded, jittered backoff, and
// gives up only when the fleet stops.
func (f *Fleet) retry(what string, try func(ctx context.Context) error) bool {
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(f.ctx, ackWait)
		err := try(ctx)
		cancel()
		if err == nil {
			return true
		}
		if f.ctx.Err() != nil {
			return false
		}
		f.c.retries.Add(1)
		f.log.Debug("sim: publish not acked; retrying", "what", what, "err", err, "backoff", backoff)
		t := time.NewTimer(backoff + rand.N(backoff/2+1))
		select {
		case <-f.ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// publish publishes v through JetStream and waits for the ack, retrying.
// Like real agents it sets no message id, so a retry whose first ack was
// lost stores a duplicate; Options.MsgIDs sets msgID, and the stream drops
// such a retry within its duplicate window. Options.Duplicates publishes
// some messages twice on purpose, as a lost ack would.
func (f *Fleet) publish(js jetstream.JetStream, subject string, v any, msgID string) bool {
	data, err := json.Marshal(v)
	if err != nil {
		f.log.Error("sim: encode", "subject", subject, "err", err)
		return false
	}
	var opts []jetstream.PublishOpt
	if f.o.MsgIDs {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	send := func(ctx context.Context) error {
		_, err := js.Publish(ctx, subject, data, opts...)
		return err
	}
	if !f.retry(subject, send) {
		return false
	}
	if f.o.Duplicates > 0 && rand.Float64() < f.o.Duplicates {
		if !f.retry(subject, send) {
			return false
		}
		f.c.duplicated.Add(1)
	}
	return true
}

// putObject stores a large output in the result_output object store under
// base or the first free base.rN (see putNoOverwrite) and returns the key.
func (f *Fleet) putObject(js jetstream.JetStream, base string, data []byte) (string, bool) {
	var key, claimed string
	ok := f.retry("object "+base, func(ctx context.Context) error {
		var err error
		key, err = putNoOverwrite(ctx, js, wire.ObjectStoreOutput, base, data, &claimed)
		return err
	})
	return key, ok
}
