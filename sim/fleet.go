package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/kvwatch"
	"github.com/kanade-go/kanade/services/agentconfig"
	"github.com/kanade-go/kanade/wire"
)

// What a real agent does besides running Commands, simulated: it follows
// its groups from KV (agent_groups ∪ agent_groups_derived), applies the
// layered config from KV agent_config, and keeps a log it serves on
// logs.fetch.{pc_id}.

// fleetState is the part of a Fleet that changes at run time, guarded by
// its own lock: group membership (and the subscriptions it implies) and
// the config scopes.
type fleetState struct {
	setMu   sync.Mutex // one membership change at a time (two buckets feed them)
	mu      sync.Mutex
	grpSubs map[string]*nats.Subscription // shared mode: one per group with members
	scopes  map[string]agentconfig.Scope  // agent_config key -> scope
}

// agentState is one agent's run-time membership, config and log.
type agentState struct {
	mu      sync.Mutex
	manual  []string // agent_groups
	derived []string // agent_groups_derived
	live    []string // the groups it listens on: manual ∪ derived
	grpSubs map[string]*nats.Subscription
	config  agentconfig.Effective
	hbEvery time.Duration // 0: Options.Heartbeat
	active  int           // runs admitted and not finished
	log     []string
}

// s is the agent's run-time state.
func (a *agent) s() *agentState { return a.f.states[a.pcID] }

// maxLogLines bounds an agent's in-memory log: 200 lines of about 120
// bytes is 24 KiB an agent, 70 MiB for a fleet of 3,000 at worst.
const maxLogLines = 200

// logf appends a line to the agent's log, as an agent's log file would
// have it: a timestamp, a level, the message.
func (a *agent) logf(format string, args ...any) {
	line := time.Now().UTC().Format("2006-01-02T15:04:05.000Z") + " INFO kanade_agent: " + fmt.Sprintf(format, args...)
	s := a.s()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.log) < maxLogLines {
		s.log = append(s.log, line)
		return
	}
	// Full: drop the oldest half at once, so appending stays cheap.
	s.log = append(s.log[:0], s.log[maxLogLines/2:]...)
	s.log = append(s.log, line)
}

// Log is the agent's log, oldest line first.
func (f *Fleet) Log(pc string) []string {
	a := f.byPC[pc]
	if a == nil {
		return nil
	}
	a.s().mu.Lock()
	defer a.s().mu.Unlock()
	return slices.Clone(a.s().log)
}

// answerLogs replies to logs.fetch.{pc_id} as an agent does: the last
// tail_lines lines (500 by default, also for a body that does not parse)
// joined by newlines with a trailing one, cut at the start to 800 KiB on a
// UTF-8 boundary.
func (a *agent) answerLogs(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	n := wire.DefaultLogLines
	var req wire.LogsRequest
	if json.Unmarshal(m.Data, &req) == nil && req.TailLines != nil {
		n = int(*req.TailLines)
	}
	a.s().mu.Lock()
	lines := a.s().log[max(0, len(a.s().log)-n):]
	text := ""
	if len(lines) > 0 {
		text = strings.Join(lines, "\n") + "\n"
	}
	a.s().mu.Unlock()
	if len(text) > wire.MaxLogReply {
		text = text[len(text)-wire.MaxLogReply:]
		for len(text) > 0 && !utf8.RuneStart(text[0]) {
			text = text[1:]
		}
	}
	m.Respond([]byte(text))
}

// Groups is the groups an agent listens on now.
func (f *Fleet) Groups(pc string) []string {
	a := f.byPC[pc]
	if a == nil {
		return nil
	}
	a.s().mu.Lock()
	defer a.s().mu.Unlock()
	return slices.Clone(a.s().live)
}

// Config is an agent's effective configuration as it applied it.
func (f *Fleet) Config(pc string) agentconfig.Effective {
	a := f.byPC[pc]
	if a == nil {
		return agentconfig.Defaults()
	}
	a.s().mu.Lock()
	defer a.s().mu.Unlock()
	return a.s().config
}

// heartbeatEvery is the agent's heartbeat interval: its config's when a
// scope sets one, else the fleet's.
func (a *agent) heartbeatEvery() time.Duration {
	a.s().mu.Lock()
	d := a.s().hbEvery
	a.s().mu.Unlock()
	if d <= 0 {
		return a.f.o.Heartbeat
	}
	return d
}

// members is group g's agents now.
func (f *Fleet) members(g string) []*agent {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	return slices.Clone(f.byGrp[g])
}

// groupHandler delivers a group's Commands to its members at delivery time.
func (f *Fleet) groupHandler(g string) nats.MsgHandler {
	return func(m *nats.Msg) { f.deliver(m, f.members(g)) }
}

// setGroups makes an agent listen on exactly the union of its manual and
// derived groups: subscribe to the new ones (then flush, as agents do),
// leave the old.
func (f *Fleet) setGroups(a *agent, manual, derived []string) {
	f.st.setMu.Lock()
	defer f.st.setMu.Unlock()
	a.s().mu.Lock()
	if manual != nil {
		a.s().manual = manual
	}
	if derived != nil {
		a.s().derived = derived
	}
	want := append(slices.Clone(a.s().manual), a.s().derived...)
	slices.Sort(want)
	want = slices.Compact(want)
	want = slices.DeleteFunc(want, func(g string) bool { return !wire.ValidToken(g) })
	old := a.s().live
	a.s().live = want
	a.s().mu.Unlock()
	if slices.Equal(old, want) {
		return
	}
	added := slices.DeleteFunc(slices.Clone(want), func(g string) bool { return slices.Contains(old, g) })
	removed := slices.DeleteFunc(slices.Clone(old), func(g string) bool { return slices.Contains(want, g) })

	f.st.mu.Lock()
	for _, g := range removed {
		f.byGrp[g] = slices.DeleteFunc(f.byGrp[g], func(x *agent) bool { return x == a })
		if len(f.byGrp[g]) == 0 {
			delete(f.byGrp, g)
		}
	}
	for _, g := range added {
		f.byGrp[g] = append(f.byGrp[g], a)
	}
	if f.o.Subscriptions == Shared {
		for _, g := range added {
			if f.st.grpSubs[g] == nil {
				f.st.grpSubs[g] = f.subscribeGroup(g, f.groupHandler(g))
			}
		}
		for _, g := range removed {
			if len(f.byGrp[g]) == 0 && f.st.grpSubs[g] != nil {
				f.st.grpSubs[g].Unsubscribe()
				delete(f.st.grpSubs, g)
			}
		}
	}
	f.st.mu.Unlock()
	if f.o.Subscriptions == PerAgent {
		a.s().mu.Lock()
		if a.s().grpSubs == nil {
			a.s().grpSubs = map[string]*nats.Subscription{}
		}
		for _, g := range added {
			one := []*agent{a}
			a.s().grpSubs[g] = f.subscribeGroupOn(a.nc, g, func(m *nats.Msg) { f.deliver(m, one) })
		}
		for _, g := range removed {
			if s := a.s().grpSubs[g]; s != nil {
				s.Unsubscribe()
				delete(a.s().grpSubs, g)
			}
		}
		a.s().mu.Unlock()
	}
	a.nc.Flush()
	a.logf("groups now [%s] (subscribed %v, left %v)", strings.Join(want, ", "), added, removed)
	f.applyConfig(a)
}

// subscribeGroup subscribes to commands.group.{g} on the fleet's
// connection; nil (logged) on failure.
func (f *Fleet) subscribeGroup(g string, h nats.MsgHandler) *nats.Subscription {
	return f.subscribeGroupOn(f.nc, g, h)
}

// subscribeGroupOn is subscribeGroup on nc (an agent's own connection).
func (f *Fleet) subscribeGroupOn(nc *nats.Conn, g string, h nats.MsgHandler) *nats.Subscription {
	s, err := nc.Subscribe(wire.CommandsGroup(g), h)
	if err != nil {
		f.log.Warn("sim: subscribe group", "group", g, "err", err)
		return nil
	}
	s.SetPendingLimits(-1, -1)
	return s
}

// unsubscribeGroups leaves every group subscription (Stop).
func (f *Fleet) unsubscribeGroups() {
	f.st.mu.Lock()
	for _, s := range f.st.grpSubs {
		if s != nil {
			s.Unsubscribe()
		}
	}
	f.st.grpSubs = map[string]*nats.Subscription{}
	f.st.mu.Unlock()
	for _, a := range f.agents {
		a.s().mu.Lock()
		for _, s := range a.s().grpSubs {
			if s != nil {
				s.Unsubscribe()
			}
		}
		a.s().grpSubs = nil
		a.s().mu.Unlock()
	}
}

// applyConfig resolves an agent's layered config from the scopes it has
// seen and applies what a simulated agent can: the heartbeat interval.
func (f *Fleet) applyConfig(a *agent) {
	f.st.mu.Lock()
	l := agentconfig.Layers{Groups: map[string]agentconfig.Scope{}}
	if s, ok := f.st.scopes[agentconfig.GlobalKey]; ok {
		l.Global = &s
	}
	if s, ok := f.st.scopes[agentconfig.PCKey(a.pcID)]; ok {
		l.PC = &s
	}
	f.st.mu.Unlock()
	for _, g := range f.Groups(a.pcID) {
		f.st.mu.Lock()
		if s, ok := f.st.scopes[agentconfig.GroupKey(g)]; ok {
			l.Groups[g] = s
		}
		f.st.mu.Unlock()
	}
	eff, warnings := agentconfig.Resolve(l)
	setsInterval := (l.Global != nil && l.Global.HeartbeatInterval != nil) || (l.PC != nil && l.PC.HeartbeatInterval != nil) ||
		slices.ContainsFunc(slices.Collect(maps.Values(l.Groups)), func(s agentconfig.Scope) bool { return s.HeartbeatInterval != nil })
	var every time.Duration
	if setsInterval {
		d, err := agentconfig.Duration(eff.HeartbeatInterval)
		if err != nil || d < time.Second {
			a.logf("config: heartbeat_interval %q unusable (%v); keeping the default", eff.HeartbeatInterval, err)
		} else {
			every = d
		}
	}
	a.s().mu.Lock()
	before, _ := json.Marshal(a.s().config)
	after, _ := json.Marshal(eff)
	changed := string(before) != string(after) || a.s().hbEvery != every
	a.s().config, a.s().hbEvery = eff, every
	a.s().mu.Unlock()
	if changed {
		a.logf("config applied: heartbeat_interval=%s max_local_concurrent=%v", eff.HeartbeatInterval, eff.MaxLocalConcurrent)
	}
	for _, w := range warnings {
		a.logf("config warning: %s", w)
	}
}

// watchFleetKV follows agent_groups, agent_groups_derived and agent_config
// until the fleet stops. It returns once the current values are applied.
func (f *Fleet) watchFleetKV(ctx context.Context) error {
	if f.js == nil {
		// Agents on their own credentials only: each follows its own keys
		// on its own connection, as upstream agents do (the backend's
		// watch relay narrows a whole-bucket watch to the agent's keys).
		for _, a := range f.agents {
			if err := f.followKV(ctx, a.js, a); err != nil {
				return err
			}
		}
		return nil
	}
	return f.followKV(ctx, f.js, nil)
}

// followKV watches the fleet buckets with js; only, when set, is the one
// agent whose keys js sees.
func (f *Fleet) followKV(ctx context.Context, js jetstream.JetStream, only *agent) error {
	type watched struct {
		bucket string
		apply  func(e jetstream.KeyValueEntry)
	}
	decodeGroups := func(e jetstream.KeyValueEntry) []string {
		if e.Operation() != jetstream.KeyValuePut {
			return []string{}
		}
		g, err := wire.DecodeAgentGroups(e.Value())
		if err != nil {
			f.log.Warn("sim: agent groups value does not decode; taken as none", "pc_id", e.Key(), "err", err)
			return []string{}
		}
		if g.Groups == nil {
			return []string{}
		}
		return g.Groups
	}
	buckets := []watched{
		{wire.BucketAgentGroups, func(e jetstream.KeyValueEntry) {
			if a := f.byPC[e.Key()]; a != nil {
				f.setGroups(a, decodeGroups(e), nil)
			}
		}},
		{wire.BucketAgentGroupsDerived, func(e jetstream.KeyValueEntry) {
			if a := f.byPC[e.Key()]; a != nil {
				f.setGroups(a, nil, decodeGroups(e))
			}
		}},
		{wire.BucketAgentConfig, func(e jetstream.KeyValueEntry) {
			var s agentconfig.Scope
			f.st.mu.Lock()
			if e.Operation() != jetstream.KeyValuePut {
				delete(f.st.scopes, e.Key())
			} else if err := json.Unmarshal(e.Value(), &s); err != nil {
				f.log.Warn("sim: config scope does not decode; ignored", "key", e.Key(), "err", err)
				delete(f.st.scopes, e.Key())
			} else {
				f.st.scopes[e.Key()] = s
			}
			f.st.mu.Unlock()
			if pc, ok := strings.CutPrefix(e.Key(), "pcs."); ok {
				if a := f.byPC[pc]; a != nil {
					f.applyConfig(a)
				}
				return
			}
			if only != nil {
				f.applyConfig(only)
				return
			}
			for _, a := range f.agents {
				f.applyConfig(a)
			}
		}},
	}
	for _, b := range buckets {
		// A bucket that is missing (an older backend) or that this
		// connection may not read is not followed: the fleet runs on its
		// start-up groups, as an agent without the rights would.
		kv, err := js.KeyValue(ctx, b.bucket)
		if err != nil {
			if !errors.Is(err, jetstream.ErrBucketNotFound) {
				f.log.Warn("sim: not following a fleet bucket", "bucket", b.bucket, "err", err)
			}
			continue
		}
		// followKV runs while the fleet starts, before Stop can close it.
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = kvwatch.Follow(wctx, f.ctx, kv, &f.wg, f.log, b.apply)
		cancel()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return fmt.Errorf("sim: watch %s: %w", b.bucket, ctx.Err())
		case errors.Is(err, context.DeadlineExceeded):
			f.log.Warn("sim: a fleet bucket's current values did not arrive; following it from now on", "bucket", b.bucket)
		default:
			f.log.Warn("sim: not following a fleet bucket", "bucket", b.bucket, "err", err)
		}
	}
	return nil
}

// admit waits for a run slot under the agent's max_local_concurrent (no
// bound when unset) and returns its release; a run whose context ends
// while it waits gets a no-op release and goes on to notice the end.
func (a *agent) admit(ctx context.Context) (release func()) {
	st := a.s()
	logged := false
	for {
		st.mu.Lock()
		limit := st.config.MaxLocalConcurrent
		if limit == nil || st.active < int(*limit) {
			st.active++
			st.mu.Unlock()
			return func() {
				st.mu.Lock()
				st.active--
				st.mu.Unlock()
			}
		}
		st.mu.Unlock()
		if !logged {
			logged = true
			a.logf("run waits: max_local_concurrent=%d reached", *limit)
		}
		select {
		case <-ctx.Done():
			return func() {}
		case <-time.After(20 * time.Millisecond):
		}
	}
}
