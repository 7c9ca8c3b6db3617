// Package sim runs simulated kanade agents: many per process, each a pc_id
// that speaks the agent side of the wire contract (Commands in, EventStarted
// and ExecResult out through JetStream, heartbeats, pings, live tail, kill).
// The demo, the tests and the load benchmarks use it in-process; `kanade sim`
// runs a fleet against any NATS.
//
// Agents start with only new Commands (deliver-new, core subscriptions):
// they do not replay the EXEC stream's last Command per subject, because a
// simulated agent has no memory of what it already ran and would re-run the
// last broadcast at every start. Options.Replay turns replay on.
package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/agentconfig"
	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/wire"
)

// Subscriptions is how a fleet listens.
type Subscriptions string

const (
	// Shared uses one subscription per subject pattern for the whole fleet
	// and dispatches in-process: a broadcast crosses the connection once.
	Shared Subscriptions = "shared"
	// PerAgent subscribes each agent to its own subjects, as separate agents
	// would: a broadcast crosses the connection once per agent.
	PerAgent Subscriptions = "per-agent"
)

// Options configure a fleet.
type Options struct {
	// Conn is the fleet's connection; the fleet does not close it.
	Conn *nats.Conn
	// AgentConn, when set, gives every agent a connection of its own, as
	// real agents have: typically one on its pc_id's credentials (see
	// natsauth). The fleet closes them at Stop. Subscriptions are then per
	// agent, and Conn, optional, only writes KV agent_groups (an agent
	// may not write it).
	AgentConn func(pcID string) (*nats.Conn, error)
	// Agents is how many agents run; their pc_ids are Prefix + 4 digits
	// from First: sim-pc-0001, sim-pc-0002, …
	Agents int
	Prefix string
	First  int
	// PCIDs, when set, are the agents' pc_ids instead (Agents is then
	// their number): those of a credentials file, say.
	PCIDs []string
	// Groups are dealt round-robin: agent i is in Groups[i % len(Groups)].
	Groups []string
	// Mix shapes synthetic runs (DefaultMix when zero).
	Mix Mix
	// Exec runs `sh` scripts for real instead of synthetic runs; other
	// shells exit 122 as agents on this OS would.
	Exec bool
	// Heartbeat is the heartbeat interval (default 30 s); one is sent at
	// start.
	Heartbeat time.Duration
	// Replay delivers, at start, the last Command of each of an agent's
	// subjects kept in the EXEC stream (deadline_at still applies). With
	// AgentConn each agent replays as upstream agents do, through its own
	// durable pull consumer (natsauth.ReplayConsumer), so a restarted
	// agent gets only what it has not acked before.
	Replay bool
	// Subscriptions is Shared (default) or PerAgent.
	Subscriptions Subscriptions
	// AgentVersion is reported in heartbeats (default "sim-0.1.0").
	AgentVersion string
	// OSFamily is reported in heartbeats (default "linux").
	OSFamily string
	// KeepFinished is how long a finished run answers job.tail (default
	// 60 s, the contract's value).
	KeepFinished time.Duration
	// MsgIDs sets a Nats-Msg-Id on EventStarted and ExecResult publishes,
	// so the streams drop a retried publish. Real agents set none, and the
	// default is to do as they do: a retry after a lost ack then reaches the
	// stream twice, and the backend must cope.
	MsgIDs bool
	// Duplicates is the fraction (0 to 1) of EventStarted and ExecResult
	// publishes sent a second time once acked, as an agent does when an ack
	// is lost, to exercise the backend's handling of duplicates. With
	// MsgIDs the streams drop them.
	Duplicates float64
	// Keyring makes the agents verify Commands as an enforcing upstream
	// agent does: only a Command signed by one of its keys runs; any other
	// is refused with exit 123 and upstream's refusal result. Envelopes
	// (kanade.command.v2) are checked for this PC and their expiry too, and
	// the agents report command_keys, enforcing and command_protocols in
	// their heartbeats. Nil: no checks, as an agent that predates signing
	// (an envelope does not decode as a Command and is dropped). An empty
	// ring does not enforce, as upstream declines to with no keys.
	Keyring *signing.Keyring
	Logger  *slog.Logger
}

// Stats are the fleet's counters since start.
type Stats struct {
	Agents           int
	Running          int64
	Commands         int64 // Commands accepted (one per agent and request_id)
	Duplicates       int64 // deliveries dropped as already seen
	StartedPublished int64
	ResultsPublished int64
	PublishRetries   int64
	Duplicated       int64 // publishes sent twice on purpose (Options.Duplicates)
	TailsAnswered    int64
	PingsAnswered    int64
	Heartbeats       int64
	Kills            int64 // runs stopped by kill.{exec_id}
	Refused          int64 // Commands refused for their signature (exit 123)
}

// String is the summary line.
func (s Stats) String() string {
	return fmt.Sprintf("agents=%d running=%d commands=%d dup=%d started=%d results=%d retries=%d republished=%d tails=%d pings=%d heartbeats=%d kills=%d refused=%d",
		s.Agents, s.Running, s.Commands, s.Duplicates, s.StartedPublished, s.ResultsPublished, s.PublishRetries,
		s.Duplicated, s.TailsAnswered, s.PingsAnswered, s.Heartbeats, s.Kills, s.Refused)
}

type counters struct {
	running, commands, duplicates, started, results, retries, duplicated, tails, pings, heartbeats, kills, refused atomic.Int64
}

// Fleet is a running set of simulated agents.
type Fleet struct {
	o      Options
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	agents []*agent
	byPC   map[string]*agent
	byGrp  map[string][]*agent // guarded by st.mu once started
	st     fleetState
	states map[string]*agentState // by pc_id, fixed at start
	subs   []*nats.Subscription
	owned  []*nats.Conn // the agents' own connections (Options.AgentConn)
	c      counters
	gates  gates

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed against wg.Add racing Stop
	closed bool
	wg     sync.WaitGroup // runs, publishes, the housekeeping loop
	stop   sync.Once
}

// Start subscribes every agent, sends the first heartbeats, writes the
// agents' groups to KV agent_groups, and returns once Commands published
// from now on reach the agents. ctx bounds the start only: the fleet runs
// until Stop.
func Start(ctx context.Context, o Options) (*Fleet, error) {
	if o.Conn == nil && o.AgentConn == nil {
		return nil, errors.New("sim: a connection is required")
	}
	if o.AgentConn != nil {
		o.Subscriptions = PerAgent
	}
	if err := o.withDefaults(); err != nil {
		return nil, err
	}
	var js jetstream.JetStream
	if o.Conn != nil {
		var err error
		if js, err = jetstream.New(o.Conn); err != nil {
			return nil, fmt.Errorf("sim: jetstream: %w", err)
		}
	}

	fctx, cancel := context.WithCancel(context.Background())
	f := &Fleet{
		o: o, log: o.Logger, nc: o.Conn, js: js,
		byPC: make(map[string]*agent, o.Agents), byGrp: map[string][]*agent{},
		states: make(map[string]*agentState, o.Agents),
		st:     fleetState{grpSubs: map[string]*nats.Subscription{}, scopes: map[string]agentconfig.Scope{}},
		ctx:    fctx, cancel: cancel,
	}
	for i := range o.Agents {
		pc := fmt.Sprintf("%s%04d", o.Prefix, o.First+i)
		if len(o.PCIDs) > 0 {
			pc = o.PCIDs[i]
		}
		a := &agent{f: f, pcID: pc, seen: map[string]time.Time{}, runs: map[string]*run{},
			nc: f.nc, js: js}
		if o.AgentConn != nil {
			nc, err := o.AgentConn(a.pcID)
			if err != nil {
				f.Stop()
				return nil, fmt.Errorf("sim: connect agent %s: %w", a.pcID, err)
			}
			f.owned = append(f.owned, nc)
			a.nc = nc
			if a.js, err = jetstream.New(nc); err != nil {
				f.Stop()
				return nil, fmt.Errorf("sim: jetstream: %w", err)
			}
		}
		if len(o.Groups) > 0 {
			a.groups = []string{o.Groups[i%len(o.Groups)]}
		}
		f.agents = append(f.agents, a)
		f.byPC[a.pcID] = a
		f.states[a.pcID] = &agentState{manual: slices.Clone(a.groups), live: slices.Clone(a.groups), config: agentconfig.Defaults()}
		a.logf("kanade agent %s starting as %s", o.AgentVersion, a.pcID)
		for _, g := range a.groups {
			f.byGrp[g] = append(f.byGrp[g], a)
		}
	}

	if err := f.subscribe(); err != nil {
		f.Stop()
		return nil, err
	}
	for _, nc := range f.conns() {
		if err := nc.FlushTimeout(30 * time.Second); err != nil {
			f.Stop()
			return nil, fmt.Errorf("sim: flush subscriptions: %w", err)
		}
	}
	for _, a := range f.agents {
		a.heartbeat()
	}
	if err := f.writeGroups(ctx); err != nil {
		f.Stop()
		return nil, err
	}
	// From here on membership and config follow KV, as agents do.
	if err := f.watchFleetKV(ctx); err != nil {
		f.Stop()
		return nil, err
	}
	if o.Replay {
		if err := f.replay(ctx); err != nil {
			f.Stop()
			return nil, err
		}
	}
	f.spawn(f.housekeeping)
	return f, nil
}

// Validate checks the options (all but Conn) without starting anything.
func (o Options) Validate() error { return o.withDefaults() }

// withDefaults fills the zero options and checks the rest.
func (o *Options) withDefaults() error {
	if len(o.PCIDs) > 0 {
		o.Agents = len(o.PCIDs)
		seen := map[string]bool{}
		for _, pc := range o.PCIDs {
			if !wire.ValidToken(pc) || seen[pc] {
				return fmt.Errorf("sim: pc_id %q is not a subject token or is listed twice", pc)
			}
			seen[pc] = true
		}
	}
	if o.Agents < 1 {
		return fmt.Errorf("sim: agents must be at least 1, not %d", o.Agents)
	}
	if o.Prefix == "" {
		o.Prefix = "sim-pc-"
	}
	if o.First == 0 {
		o.First = 1
	}
	if o.Mix == (Mix{}) {
		o.Mix = DefaultMix()
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 30 * time.Second
	}
	if o.Subscriptions == "" {
		o.Subscriptions = Shared
	}
	if o.Subscriptions != Shared && o.Subscriptions != PerAgent {
		return fmt.Errorf("sim: subscriptions must be %s or %s, not %q", Shared, PerAgent, o.Subscriptions)
	}
	if o.AgentVersion == "" {
		o.AgentVersion = "sim-0.1.0"
	}
	if o.OSFamily == "" {
		o.OSFamily = "linux"
	}
	if o.KeepFinished <= 0 {
		o.KeepFinished = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if !(o.Duplicates >= 0 && o.Duplicates <= 1) {
		return fmt.Errorf("sim: duplicates must be a fraction from 0 to 1, not %v", o.Duplicates)
	}
	for _, g := range o.Groups {
		if !wire.ValidToken(g) {
			return fmt.Errorf("sim: group %q cannot be a subject token", g)
		}
	}
	if !wire.ValidToken(o.Prefix) {
		return fmt.Errorf("sim: prefix %q cannot start a subject token", o.Prefix)
	}
	return nil
}

// Stop stops the runs in flight (their results are not published, as with
// an agent switched off), unsubscribes, and waits for every goroutine.
func (f *Fleet) Stop() {
	f.stop.Do(func() {
		for _, s := range f.subs {
			s.Unsubscribe()
		}
		f.unsubscribeGroups()
		f.mu.Lock()
		f.closed = true
		f.mu.Unlock()
		f.cancel()
		f.wg.Wait()
		for _, nc := range f.owned {
			nc.Close()
		}
	})
}

// conns lists the connections the fleet uses.
func (f *Fleet) conns() []*nats.Conn {
	if len(f.owned) > 0 {
		return f.owned
	}
	return []*nats.Conn{f.nc}
}

// Stats returns the counters.
func (f *Fleet) Stats() Stats {
	return Stats{
		Agents:           len(f.agents),
		Running:          f.c.running.Load(),
		Commands:         f.c.commands.Load(),
		Duplicates:       f.c.duplicates.Load(),
		StartedPublished: f.c.started.Load(),
		ResultsPublished: f.c.results.Load(),
		PublishRetries:   f.c.retries.Load(),
		Duplicated:       f.c.duplicated.Load(),
		TailsAnswered:    f.c.tails.Load(),
		PingsAnswered:    f.c.pings.Load(),
		Heartbeats:       f.c.heartbeats.Load(),
		Kills:            f.c.kills.Load(),
		Refused:          f.c.refused.Load(),
	}
}

// PCIDs lists the fleet's pc_ids in order.
func (f *Fleet) PCIDs() []string {
	out := make([]string, len(f.agents))
	for i, a := range f.agents {
		out[i] = a.pcID
	}
	return out
}

// Members lists the pc_ids in group g.
func (f *Fleet) Members(g string) []string {
	var out []string
	for _, a := range f.members(g) {
		out = append(out, a.pcID)
	}
	return out
}

// subscribe sets up the fleet's subscriptions for the chosen mode.
func (f *Fleet) subscribe() error {
	sub := func(subject string, h nats.MsgHandler) error { return f.sub(f.nc, subject, h) }
	if f.o.Subscriptions == Shared {
		if err := sub(wire.SubjectCommandsAll, func(m *nats.Msg) { f.deliver(m, f.agents) }); err != nil {
			return err
		}
		for _, g := range slices.Sorted(maps.Keys(f.byGrp)) {
			if f.st.grpSubs[g] = f.subscribeGroup(g, f.groupHandler(g)); f.st.grpSubs[g] == nil {
				return fmt.Errorf("sim: subscribe %s failed", wire.CommandsGroup(g))
			}
		}
		pcSubs := []struct {
			subject string
			h       func(*agent, *nats.Msg)
		}{
			{wire.CommandsPC("*"), func(a *agent, m *nats.Msg) { f.deliver(m, []*agent{a}) }},
			{wire.JobTail("*"), (*agent).answerTail},
			{wire.Ping("*"), func(a *agent, m *nats.Msg) { a.logf("ping answered"); a.answerPing(m) }},
			{wire.LogsFetch("*"), (*agent).answerLogs},
		}
		for _, ps := range pcSubs {
			h, at := ps.h, wildcardAt(ps.subject)
			if err := sub(ps.subject, func(m *nats.Msg) {
				// Another fleet or a real agent may own this pc_id: stay quiet.
				if a := f.byPC[token(m.Subject, at)]; a != nil {
					h(a, m)
				}
			}); err != nil {
				return err
			}
		}
		return sub(wire.Kill("*"), func(m *nats.Msg) { f.kill(m.Subject, f.agents) })
	}
	for _, a := range f.agents {
		a := a
		one := []*agent{a}
		sub := func(subject string, h nats.MsgHandler) error { return f.sub(a.nc, subject, h) }
		subjects := []string{wire.SubjectCommandsAll, wire.CommandsPC(a.pcID)}
		st := a.s()
		st.grpSubs = map[string]*nats.Subscription{}
		for _, g := range a.groups {
			if st.grpSubs[g] = f.subscribeGroupOn(a.nc, g, func(m *nats.Msg) { f.deliver(m, one) }); st.grpSubs[g] == nil {
				return fmt.Errorf("sim: subscribe %s failed", wire.CommandsGroup(g))
			}
		}
		for _, s := range subjects {
			if err := sub(s, func(m *nats.Msg) { f.deliver(m, one) }); err != nil {
				return err
			}
		}
		if err := sub(wire.JobTail(a.pcID), a.answerTail); err != nil {
			return err
		}
		if err := sub(wire.Ping(a.pcID), func(m *nats.Msg) { a.logf("ping answered"); a.answerPing(m) }); err != nil {
			return err
		}
		if err := sub(wire.LogsFetch(a.pcID), a.answerLogs); err != nil {
			return err
		}
		if err := sub(wire.Kill("*"), func(m *nats.Msg) { f.kill(m.Subject, one) }); err != nil {
			return err
		}
	}
	return nil
}

// sub subscribes on nc and keeps the subscription for Stop.
func (f *Fleet) sub(nc *nats.Conn, subject string, h nats.MsgHandler) error {
	s, err := nc.Subscribe(subject, h)
	if err != nil {
		return fmt.Errorf("sim: subscribe %s: %w", subject, err)
	}
	// A broadcast to thousands of agents must not be dropped as a slow
	// consumer while runs start.
	s.SetPendingLimits(-1, -1)
	f.mu.Lock()
	f.subs = append(f.subs, s)
	f.mu.Unlock()
	return nil
}

// wildcardAt is the position of the "*" token in a subscription subject
// built by wire with "*" for the pc_id: where each message carries its pc_id.
func wildcardAt(subject string) int {
	return slices.Index(strings.Split(subject, "."), "*")
}

// token is the i-th dot-separated token of subject ("" if there is none).
func token(subject string, i int) string {
	for ; i > 0; i-- {
		_, rest, ok := strings.Cut(subject, ".")
		if !ok {
			return ""
		}
		subject = rest
	}
	tok, _, _ := strings.Cut(subject, ".")
	return tok
}

// deliver decodes a Command once and hands it to each agent; with a
// keyring it checks the signature once and an envelope per agent first.
func (f *Fleet) deliver(m *nats.Msg, to []*agent) {
	received := time.Now()
	enforcing := f.o.Keyring.Len() > 0
	if enforcing && signing.IsEnvelope(m.Data) {
		f.deliverEnvelope(m, to, received)
		return
	}
	var cmd wire.Command
	if err := json.Unmarshal(m.Data, &cmd); err != nil || cmd.RequestID == "" {
		f.log.Warn("sim: ignoring a Command that does not decode", "subject", m.Subject, "err", err)
		return
	}
	if enforcing {
		if v := f.o.Keyring.Verify(m.Header, m.Data, received); v.Outcome != signing.OK {
			f.log.Warn("sim: refusing a Command", "subject", m.Subject, "request_id", cmd.RequestID, "outcome", v.Outcome, "detail", v.Detail)
			for _, a := range to {
				a.refuse(cmd, v)
			}
			return
		}
	}
	for _, a := range to {
		a.logf("command %s %s request_id=%s received on %s", cmd.ID, cmd.Version, cmd.RequestID, m.Subject)
		a.accept(cmd, received)
	}
}

// deliverEnvelope checks a v2 envelope's signature once and its target and
// expiry for each agent. Upstream's agents publish no result for a refused
// envelope (a warning and an event only); these publish the refusal
// result, so that a refusal shows in the results.
func (f *Fleet) deliverEnvelope(m *nats.Msg, to []*agent, received time.Time) {
	v := f.o.Keyring.Verify(m.Header, m.Data, received)
	var outer struct {
		Command wire.Command `json:"command"`
	}
	_ = json.Unmarshal(m.Data, &outer) // what it names, for a refusal
	for _, a := range to {
		inner, av := signing.CheckEnvelope(v, m.Data, a.pcID, received)
		if av.Outcome != signing.OK {
			f.log.Warn("sim: refusing an envelope", "subject", m.Subject, "pc_id", a.pcID, "outcome", av.Outcome, "detail", av.Detail)
			if outer.Command.RequestID != "" {
				a.refuse(outer.Command, av)
			}
			continue
		}
		var cmd wire.Command
		if err := json.Unmarshal(inner, &cmd); err != nil {
			continue // CheckEnvelope decoded it already
		}
		a.accept(cmd, received)
	}
}

// kill stops the runs of exec_id among the given agents.
func (f *Fleet) kill(subject string, among []*agent) {
	execID := strings.TrimPrefix(subject, wire.Kill(""))
	for _, a := range among {
		a.kill(execID)
	}
}

// writeGroups seeds each agent's groups in KV agent_groups
// ({"groups":[…]}), a few at a time, for the PCs that have no key yet:
// membership belongs to the operator, so a restarted fleet keeps what was
// set through the API, and the agents follow it (watchFleetKV).
func (f *Fleet) writeGroups(ctx context.Context) error {
	if f.js == nil {
		return nil // agents on their own credentials may not write it
	}
	kv, err := f.js.KeyValue(ctx, wire.BucketAgentGroups)
	if err != nil {
		return fmt.Errorf("sim: kv %s: %w", wire.BucketAgentGroups, err)
	}
	work := make(chan *agent)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range min(32, len(f.agents)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range work {
				groups := a.groups
				if groups == nil {
					groups = []string{}
				}
				b, _ := json.Marshal(wire.AgentGroups{Groups: groups})
				if _, err := kv.Create(ctx, a.pcID, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
					select {
					case errs <- fmt.Errorf("sim: kv put %s: %w", a.pcID, err):
					default:
					}
				}
			}
		}()
	}
	for _, a := range f.agents {
		work <- a
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// replay delivers the last Command kept in EXEC for each subject an agent
// listens on.
func (f *Fleet) replay(ctx context.Context) error {
	if len(f.owned) > 0 {
		// Each agent replays on its own connection, as upstream agents do:
		// through its durable replay consumer.
		for _, a := range f.agents {
			if err := f.replayConsumer(ctx, a); err != nil {
				return err
			}
		}
		return nil
	}
	return f.replayFor(ctx, f.js, f.agents)
}

// replayFor delivers the last Command of each subject of agents, read
// with js.
func (f *Fleet) replayFor(ctx context.Context, js jetstream.JetStream, agents []*agent) error {
	s, err := js.Stream(ctx, wire.StreamExec)
	if err != nil {
		return fmt.Errorf("sim: replay: stream %s: %w", wire.StreamExec, err)
	}
	last := func(subject string) *nats.Msg {
		m, err := s.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgNotFound) {
				f.log.Warn("sim: replay", "subject", subject, "err", err)
			}
			return nil
		}
		return &nats.Msg{Subject: m.Subject, Data: m.Data, Header: m.Header}
	}
	if m := last(wire.SubjectCommandsAll); m != nil {
		f.deliver(m, agents)
	}
	f.st.mu.Lock()
	groups := slices.Collect(maps.Keys(f.byGrp))
	f.st.mu.Unlock()
	in := make(map[*agent]bool, len(agents))
	for _, a := range agents {
		in[a] = true
	}
	for _, g := range groups {
		var to []*agent
		for _, a := range f.members(g) {
			if in[a] {
				to = append(to, a)
			}
		}
		if len(to) == 0 {
			continue
		}
		if m := last(wire.CommandsGroup(g)); m != nil {
			f.deliver(m, to)
		}
	}
	for _, a := range agents {
		if m := last(wire.CommandsPC(a.pcID)); m != nil {
			f.deliver(m, []*agent{a})
		}
	}
	return nil
}

// housekeeping sends heartbeats spread over the interval and forgets
// finished runs and old request ids.
func (f *Fleet) housekeeping() {
	n := len(f.agents)
	start := time.Now()
	next := make([]time.Time, n)
	for i := range next {
		// Spread over the interval after the first one at start, so a big
		// fleet does not beat in one burst.
		next[i] = start.Add(f.o.Heartbeat + f.o.Heartbeat*time.Duration(i)/time.Duration(n))
	}
	step := min(f.o.Heartbeat/4, time.Second)
	tick := time.NewTicker(step)
	defer tick.Stop()
	lastSweep := start
	for {
		select {
		case <-f.ctx.Done():
			return
		case now := <-tick.C:
			for i, a := range f.agents {
				if !now.Before(next[i]) {
					a.heartbeat()
					every := a.heartbeatEvery()
					for !now.Before(next[i]) {
						next[i] = next[i].Add(every)
					}
				}
			}
			if now.Sub(lastSweep) >= time.Second {
				lastSweep = now
				for _, a := range f.agents {
					a.sweep(now)
				}
			}
		}
	}
}
