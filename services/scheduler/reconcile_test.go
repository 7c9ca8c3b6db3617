package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// simFleet is a set of simulated agents for the reconcile tests: they
// heartbeat (the agents table), take the Commands addressed to them
// (commands.all, commands.group.<g>, commands.pc.<id>) and report each run
// in execution_results as the projector would, at the fake clock's time,
// with the exit code the test chose, or leave it in flight.
type simFleet struct {
	t     *testing.T
	n     *nodetest.Node
	clock *fakeClock

	mu     sync.Mutex
	alive  []string
	groups map[string][]string
	exit   map[string]int  // default 0
	hold   map[string]bool // runs stay in flight
	runs   map[string]int  // Commands taken per PC
	cmds   []wire.Command
}

func startSimFleet(t *testing.T, n *nodetest.Node, clock *fakeClock, pcs ...string) *simFleet {
	f := &simFleet{t: t, n: n, clock: clock, groups: map[string][]string{}, exit: map[string]int{},
		hold: map[string]bool{}, runs: map[string]int{}}
	nc := n.Conn(t)
	if _, err := nc.Subscribe("commands.>", f.take); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	f.add(pcs...)
	return f
}

// add brings PCs online (a heartbeat now).
func (f *simFleet) add(pcs ...string) {
	f.mu.Lock()
	f.alive = append(f.alive, pcs...)
	f.mu.Unlock()
	f.beat()
}

// beat refreshes every alive PC's heartbeat to the clock's now.
func (f *simFleet) beat() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, pc := range f.alive {
		if _, err := f.n.DB.W.Exec(`INSERT INTO agents (pc_id, last_heartbeat) VALUES (?, ?)
			ON CONFLICT (pc_id) DO UPDATE SET last_heartbeat = excluded.last_heartbeat`, pc, store.FormatTime(f.clock.Now())); err != nil {
			f.t.Error(err)
		}
	}
}

func (f *simFleet) take(m *nats.Msg) {
	var c wire.Command
	if err := json.Unmarshal(m.Data, &c); err != nil {
		f.t.Errorf("command: %v", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var pcs []string
	switch {
	case m.Subject == wire.SubjectCommandsAll:
		pcs = f.alive
	case strings.HasPrefix(m.Subject, "commands.group."):
		g := strings.TrimPrefix(m.Subject, "commands.group.")
		for _, pc := range f.alive {
			if slices.Contains(f.groups[pc], g) {
				pcs = append(pcs, pc)
			}
		}
	default:
		pcs = []string{strings.TrimPrefix(m.Subject, "commands.pc.")}
	}
	f.cmds = append(f.cmds, c)
	now := store.FormatTime(f.clock.Now())
	for _, pc := range pcs {
		f.runs[pc]++
		var code, finished any = f.exit[pc], now
		if f.hold[pc] {
			code, finished = nil, nil
		}
		if _, err := f.n.DB.W.Exec(`INSERT INTO execution_results (result_id, request_id, exec_id, pc_id, exit_code,
				started_at, finished_at, recorded_at, job_id, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			*c.ExecID+"/"+pc, c.RequestID, *c.ExecID, pc, code, now, finished, now, c.ID, c.Version); err != nil {
			f.t.Error(err)
		}
	}
}

// finish ends a PC's runs in flight with exit code.
func (f *simFleet) finish(pc string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.hold, pc)
	if _, err := f.n.DB.W.Exec(`UPDATE execution_results SET exit_code = ?, finished_at = ? WHERE pc_id = ? AND finished_at IS NULL`,
		code, store.FormatTime(f.clock.Now()), pc); err != nil {
		f.t.Error(err)
	}
}

func (f *simFleet) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// wantRuns waits until the Commands taken per PC are want, and stay so.
func (f *simFleet) wantRuns(want map[string]int) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for stable := 0; stable < 3; time.Sleep(20 * time.Millisecond) {
		f.mu.Lock()
		got := maps.Clone(f.runs)
		f.mu.Unlock()
		if maps.Equal(got, want) {
			stable++
			continue
		}
		stable = 0
		if time.Now().After(deadline) {
			f.t.Fatalf("runs per PC %v, want %v", got, want)
		}
	}
}

// ticks collects the engine's Observe calls.
type tickLog struct {
	mu   sync.Mutex
	seen map[string]int // "<id>@<tick>" -> handled count
	ch   chan struct{}
}

func newTicks() *tickLog { return &tickLog{seen: map[string]int{}, ch: make(chan struct{}, 1)} }

func (k *tickLog) observe(id string, tick time.Time) {
	k.mu.Lock()
	k.seen[id+"@"+tick.UTC().Format(time.RFC3339)]++
	k.mu.Unlock()
	select {
	case k.ch <- struct{}{}:
	default:
	}
}

// wait waits until each id's tick at was handled n times.
func (k *tickLog) wait(t *testing.T, at time.Time, n int, ids ...string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		done := true
		k.mu.Lock()
		for _, id := range ids {
			if k.seen[id+"@"+at.UTC().Format(time.RFC3339)] < n {
				done = false
			}
		}
		k.mu.Unlock()
		if done {
			return
		}
		select {
		case <-k.ch:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("tick %v of %v not handled %d times", at, ids, n)
		}
	}
}

type reconcileRig struct {
	n     *nodetest.Node
	clock *fakeClock
	nc    *nats.Conn
	fleet *simFleet
	ticks *tickLog
	nodes []*Scheduler
}

// startRig starts nodes schedulers on one NATS with a fake clock at t0, a
// sim fleet of pcs and the echo job.
func startRig(t *testing.T, t0 time.Time, nodes int, pcs ...string) *reconcileRig {
	return startRigWith(t, t0, nodes, nil, pcs...)
}

// startRigWith is startRig with each node's options passed through opt
// (nil: as they are) before it starts.
func startRigWith(t *testing.T, t0 time.Time, nodes int, opt func(*Options), pcs ...string) *reconcileRig {
	n := nodetest.Start(t)
	r := &reconcileRig{n: n, clock: newFakeClock(t0), ticks: newTicks()}
	for i := range nodes {
		o := Options{Conn: n.Conn(t), DB: n.DB, NodeName: fmt.Sprintf("n%d", i),
			Logger: n.Logger, Clock: r.clock, Observe: r.ticks.observe}
		if opt != nil {
			opt(&o)
		}
		s, err := Start(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Stop() })
		waitSynced(t, s)
		r.nodes = append(r.nodes, s)
	}
	r.nc = n.Conn(t)
	r.fleet = startSimFleet(t, n, r.clock, pcs...)
	mustCall(t, r.nc, "kanade.jobs.put", "", echoJob)
	return r
}

// poll moves the clock to at (a minute the engine is armed for), refreshes
// the heartbeats, and waits until every id's poll was handled.
func (r *reconcileRig) poll(t *testing.T, at time.Time, ids ...string) {
	t.Helper()
	r.clock.waitArmedN(t, at, len(r.nodes))
	r.clock.mu.Lock()
	r.clock.now = at.Add(-time.Millisecond)
	r.clock.mu.Unlock()
	r.fleet.beat()
	r.clock.Set(at)
	r.ticks.wait(t, at, len(r.nodes), ids...)
}

// jump moves the clock far ahead (the engine logs the stall and re-arms
// for the next minute after at).
func (r *reconcileRig) jump(t *testing.T, at time.Time) {
	t.Helper()
	r.clock.Set(at)
	r.clock.waitArmedN(t, at.Truncate(time.Minute).Add(time.Minute), len(r.nodes))
}

var t0 = time.Date(2026, 6, 1, 12, 0, 30, 0, time.UTC)

func minute(k int) time.Time { return t0.Truncate(time.Minute).Add(time.Duration(k) * time.Minute) }

// upstreamReadable checks every blob in the schedules bucket with the
// strict upstream reader: what this backend wrote, an agent can decode.
func upstreamReadable(t *testing.T, n *nodetest.Node) {
	t.Helper()
	entries, err := listEntries(context.Background(), nil, catalogOf(t, n).Schedules)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := upstreamDecode(e.Value()); err != nil {
			t.Errorf("schedule %s: upstream cannot read %s: %v", e.Key(), e.Value(), err)
		}
	}
}

// per_pc once: every alive PC exactly once; a PC that appears later gets
// it; a failed PC is retried at the next poll; a succeeded one never again.
func TestReconcilePerPCOnce(t *testing.T) {
	r := startRig(t, t0, 1, "PC-A", "PC-B", "PC-C")
	r.fleet.set(func() { r.fleet.exit["PC-B"] = 1 })
	out := mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"kitting-once","when":{"per_pc":"once"},"job_id":"echo","target":{"all":true},"tz":"utc"}`)
	if out != `{"id":"kitting-once","when":"per_pc once","enabled":true,"job_id":"echo"}` {
		t.Errorf("summary %s", out)
	}
	r.poll(t, minute(1), "kitting-once")
	r.fleet.wantRuns(map[string]int{"PC-A": 1, "PC-B": 1, "PC-C": 1})
	r.fleet.set(func() { r.fleet.exit["PC-B"] = 0 })
	r.poll(t, minute(2), "kitting-once")
	r.fleet.wantRuns(map[string]int{"PC-A": 1, "PC-B": 2, "PC-C": 1})
	r.fleet.add("PC-D")
	r.poll(t, minute(3), "kitting-once")
	r.fleet.wantRuns(map[string]int{"PC-A": 1, "PC-B": 2, "PC-C": 1, "PC-D": 1})
	r.poll(t, minute(4), "kitting-once")
	r.jump(t, minute(300))
	r.poll(t, minute(301), "kitting-once")
	r.fleet.wantRuns(map[string]int{"PC-A": 1, "PC-B": 2, "PC-C": 1, "PC-D": 1})

	// The Commands were per PC, with upstream's mark in scheduler_dispatch.
	for _, c := range r.fleet.cmds {
		if c.ID != "echo" || c.ExecID == nil {
			t.Errorf("command %+v", c)
		}
	}
	kv, err := r.n.JetStream(t).KeyValue(context.Background(), BucketDispatch)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), "pc.12.kitting-once.4.PC-D")
	if err != nil || string(e.Value()) != "2026-06-01T12:03:00+00:00" {
		t.Errorf("mark of PC-D: %v %q", err, e)
	}
	// Coverage: all four done.
	var cov CoverageReply
	json.Unmarshal([]byte(mustCall(t, r.nc, "kanade.schedules.coverage", "", `{"id":"kitting-once"}`)), &cov)
	if cov.Total != 4 || cov.OK != 4 || cov.Fail != 0 || cov.Pending != 0 || len(cov.Agents) != 4 || cov.When != "per_pc once" {
		t.Errorf("coverage %+v", cov)
	}
	mustCall(t, r.nc, "kanade.schedules.disable", "", `{"id":"kitting-once"}`)
	mustCall(t, r.nc, "kanade.schedules.enable", "", `{"id":"kitting-once"}`)
	upstreamReadable(t, r.n)
}

// per_pc every 6h re-arms a PC 6 h after its last success; a run in flight
// is not dispatched again inside the window.
func TestReconcilePerPCEvery(t *testing.T) {
	r := startRig(t, t0, 1, "PC-A", "PC-B")
	r.fleet.set(func() { r.fleet.hold["PC-B"] = true })
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"inv","when":{"per_pc":{"every":"6h"}},"job_id":"echo","target":{"all":true},"tz":"utc"}`)
	r.poll(t, minute(1), "inv")
	r.fleet.wantRuns(map[string]int{"PC-A": 1, "PC-B": 1})
	r.poll(t, minute(2), "inv") // B in flight: marked, not again
	r.fleet.finish("PC-B", 0)
	r.poll(t, minute(3), "inv")
	r.fleet.wantRuns(map[string]int{"PC-A": 1, "PC-B": 1})
	r.jump(t, minute(6*60))
	r.poll(t, minute(6*60+1), "inv")
	r.fleet.wantRuns(map[string]int{"PC-A": 2, "PC-B": 1})
	r.poll(t, minute(6*60+2), "inv")
	r.poll(t, minute(6*60+3), "inv")
	r.fleet.wantRuns(map[string]int{"PC-A": 2, "PC-B": 2})
}

// per_target fires the whole target while no roster member succeeded; the
// target mark holds it while a run is in flight.
func TestReconcilePerTarget(t *testing.T) {
	r := startRig(t, t0, 1, "PC-A", "PC-B", "PC-C")
	js := r.n.JetStream(t)
	groups, _ := js.KeyValue(context.Background(), wire.BucketAgentGroups)
	for _, pc := range []string{"PC-A", "PC-B"} {
		groups.Put(context.Background(), pc, []byte(`{"groups":["lab"]}`))
		r.fleet.set(func() { r.fleet.groups[pc] = []string{"lab"}; r.fleet.hold[pc] = true })
	}
	// The group mirror has taken both in.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if g := r.nodes[0].Catalog.Agents.Roster.GroupsOf("PC-B"); len(g) == 1 || time.Now().After(deadline) {
			break
		}
	}
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"lab-once","when":{"per_target":"once"},"job_id":"echo","target":{"groups":["lab"]},"tz":"utc"}`)
	r.poll(t, minute(1), "lab-once")
	r.fleet.wantRuns(map[string]int{"PC-A": 1, "PC-B": 1})
	r.poll(t, minute(2), "lab-once") // in flight: the target mark holds
	r.fleet.finish("PC-A", 1)
	r.fleet.finish("PC-B", 0)
	r.poll(t, minute(3), "lab-once") // one member succeeded: done
	r.jump(t, minute(600))
	r.poll(t, minute(601), "lab-once")
	r.fleet.wantRuns(map[string]int{"PC-A": 1, "PC-B": 1})
	if len(r.fleet.cmds) != 1 {
		t.Errorf("%d Commands, want one to the group", len(r.fleet.cmds))
	}
}

// max_concurrent caps the runs in flight fleet-wide.
func TestReconcileMaxConcurrent(t *testing.T) {
	pcs := []string{"PC-1", "PC-2", "PC-3", "PC-4", "PC-5"}
	r := startRig(t, t0, 1, pcs...)
	r.fleet.set(func() {
		for _, pc := range pcs {
			r.fleet.hold[pc] = true
		}
	})
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"capped","when":{"per_pc":"once"},"job_id":"echo","target":{"all":true},"tz":"utc","constraints":{"max_concurrent":2},"on_failure":{"retry":{"max":2,"backoff":"30s"}}}`)
	r.poll(t, minute(1), "capped")
	r.fleet.wantRuns(map[string]int{"PC-1": 1, "PC-2": 1})
	r.poll(t, minute(2), "capped")
	r.fleet.wantRuns(map[string]int{"PC-1": 1, "PC-2": 1})
	r.fleet.finish("PC-1", 0)
	r.poll(t, minute(3), "capped")
	r.fleet.wantRuns(map[string]int{"PC-1": 1, "PC-2": 1, "PC-3": 1})
	if c := r.fleet.cmds[0]; c.Retry == nil || c.Retry.Max != 2 || c.Retry.BackoffSecs != 30 {
		t.Errorf("retry on the Command: %+v", c.Retry)
	}
}

// The gates: a window and a skip date suppress polls, the freeze
// suppresses everything until it is cleared.
func TestReconcileGatesAndFreeze(t *testing.T) {
	r := startRig(t, t0, 1, "PC-A")
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"night","when":{"per_pc":{"every":"1h"}},"job_id":"echo","target":{"all":true},"tz":"utc","constraints":{"window":"22:00-05:00","skip_dates":["2026-06-02"]}}`)
	r.poll(t, minute(1), "night") // 12:01: outside the window
	r.fleet.wantRuns(map[string]int{})
	r.jump(t, time.Date(2026, 6, 1, 22, 0, 5, 0, time.UTC))
	r.poll(t, time.Date(2026, 6, 1, 22, 1, 0, 0, time.UTC), "night")
	r.fleet.wantRuns(map[string]int{"PC-A": 1})
	// 2026-06-02 01:30 is inside the window but a skip date.
	r.jump(t, time.Date(2026, 6, 2, 1, 30, 5, 0, time.UTC))
	r.poll(t, time.Date(2026, 6, 2, 1, 31, 0, 0, time.UTC), "night")
	r.fleet.wantRuns(map[string]int{"PC-A": 1})
	// A later night: frozen, then thawed.
	out := mustCall(t, r.nc, "kanade.freeze.put", "", `{"reason":"change freeze","tz":"utc"}`)
	if out != `{"reason":"change freeze","tz":"utc"}` {
		t.Errorf("freeze put: %s", out)
	}
	if got := mustCall(t, r.nc, "kanade.freeze.get", "", ""); got != out {
		t.Errorf("freeze get: %s", got)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if f, _ := r.nodes[0].Engine.o.Freeze.Frozen(time.Now()); f || time.Now().After(deadline) {
			break
		}
	}
	r.jump(t, time.Date(2026, 6, 3, 23, 0, 5, 0, time.UTC))
	r.poll(t, time.Date(2026, 6, 3, 23, 1, 0, 0, time.UTC), "night")
	r.fleet.wantRuns(map[string]int{"PC-A": 1})
	if code, _ := call(t, r.nc, "kanade.freeze.put", "", `{"from":"2027-01-01","until":"2026-01-01","tz":"utc"}`); code != 400 {
		t.Errorf("bad freeze: %d", code)
	}
	mustCall(t, r.nc, "kanade.freeze.delete", "", "")
	if got := mustCall(t, r.nc, "kanade.freeze.get", "", ""); got != "null" {
		t.Errorf("freeze after delete: %s", got)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if f, _ := r.nodes[0].Engine.o.Freeze.Frozen(time.Now()); !f || time.Now().After(deadline) {
			break
		}
	}
	r.poll(t, time.Date(2026, 6, 3, 23, 2, 0, 0, time.UTC), "night")
	r.fleet.wantRuns(map[string]int{"PC-A": 2})
}

// runs_on: agent and on: schedules are the agents' to tick: never fired
// here, nor listed as upcoming; a backend one beside them fires.
func TestReconcileAgentSchedulesNeverFire(t *testing.T) {
	r := startRig(t, t0, 1, "PC1234", "PC-B")
	cat := catalogOf(t, r.n)
	blobs := map[string]string{
		"boot-inventory": specExamples[5],
		"agent-once":     `{"id":"agent-once","when":{"per_pc":"once"},"job_id":"echo","target":{"groups":[],"pcs":[],"all":true},"tz":"utc","runs_on":"agent","enabled":true}`,
		"agent-minute":   `{"id":"agent-minute","when":{"calendar":{"at":"12:01"}},"job_id":"echo","target":{"groups":[],"pcs":[],"all":true},"tz":"utc","runs_on":"agent","enabled":true}`,
	}
	for id, b := range blobs {
		if _, err := cat.Schedules.Put(context.Background(), id, []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"control","when":{"calendar":{"at":"12:01"}},"job_id":"echo","target":{"pcs":["PC-B"]},"tz":"utc"}`)
	var up []Upcoming
	json.Unmarshal([]byte(mustCall(t, r.nc, "kanade.schedules.upcoming", "", `{}`)), &up)
	if len(up) != 1 || up[0].ID != "control" || up[0].When != "at 12:01" {
		t.Errorf("upcoming %+v", up)
	}
	// A calendar whose time its window excludes is not upcoming; one
	// whose next day is a skip date shows the day after.
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"never","when":{"calendar":{"at":"12:30"}},"job_id":"echo","target":{"pcs":["PC-B"]},"tz":"utc","constraints":{"window":"22:00-05:00"}}`)
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"skip","when":{"calendar":{"at":"06:00"}},"job_id":"echo","target":{"pcs":["PC-B"]},"tz":"utc","constraints":{"skip_dates":["2026-06-02"]}}`)
	json.Unmarshal([]byte(mustCall(t, r.nc, "kanade.schedules.upcoming", "", `{}`)), &up)
	if len(up) != 2 || up[0].ID != "control" || up[1].ID != "skip" || up[1].NextRun != "2026-06-03T06:00:00Z" {
		t.Errorf("upcoming with gates %+v", up)
	}
	r.poll(t, minute(1), "control")
	r.fleet.wantRuns(map[string]int{"PC-B": 1})
	if out := mustCall(t, r.nc, "kanade.schedules.list", "", ""); strings.Contains(out, `"error"`) {
		t.Errorf("agent schedules listed as unusable: %s", out)
	}
}

// Two nodes: a calendar tick fires once; a poll never dispatches one PC
// twice, however many polls pass while its run is in flight.
func TestReconcileTwoNodes(t *testing.T) {
	pcs := make([]string, 20)
	for i := range pcs {
		pcs[i] = fmt.Sprintf("PC-%02d", i)
	}
	r := startRig(t, t0, 2, pcs...)
	r.fleet.set(func() {
		for _, pc := range pcs {
			r.fleet.hold[pc] = true
		}
	})
	// A 10 min timeout: the dispatch window is 11.5 min.
	mustCall(t, r.nc, "kanade.jobs.put", "", `{"id":"slow","version":"1","execute":{"shell":"sh","script":"sleep 300","timeout":"10m"}}`)
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"cal","when":{"calendar":{"at":"12:02"}},"job_id":"echo","target":{"pcs":["PC-00"]},"tz":"utc"}`)
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"each","when":{"per_pc":{"every":"1m"}},"job_id":"slow","target":{"all":true},"tz":"utc"}`)
	want := map[string]int{}
	for _, pc := range pcs {
		want[pc] = 1
	}
	r.poll(t, minute(1), "each")
	r.fleet.wantRuns(want)
	r.poll(t, minute(2), "each", "cal")
	want["PC-00"] = 2 // the calendar, once
	r.poll(t, minute(3), "each")
	r.fleet.wantRuns(want)
	// Runs end (a failure each): the next poll re-dispatches each PC once.
	for _, pc := range pcs {
		r.fleet.finish(pc, 1)
		r.fleet.set(func() { r.fleet.hold[pc] = true })
		want[pc]++
	}
	r.poll(t, minute(4), "each")
	r.poll(t, minute(5), "each")
	r.fleet.wantRuns(want)
}

// Status, coverage with offline roster members, preview of a reconcile
// shape, the YAML mirror and disable with cascade.
func TestSchedulesUpstreamAPI(t *testing.T) {
	r := startRig(t, t0, 1, "PC-A", "PC-B")
	r.fleet.set(func() { r.fleet.exit["PC-B"] = 3 })
	addAgent(t, r.n, "PC-OFF", t0.Add(-24*time.Hour))
	yamlBody := "id: inv\nwhen: { per_pc: once }  # kitting\njob_id: echo\ntarget: { all: true }\ntz: utc\nenabled: true # on\n"
	mustCall(t, r.nc, "kanade.schedules.put", "application/yaml", yamlBody)
	r.poll(t, minute(1), "inv")
	r.fleet.wantRuns(map[string]int{"PC-A": 1, "PC-B": 1})

	var cov CoverageReply
	json.Unmarshal([]byte(mustCall(t, r.nc, "kanade.schedules.coverage", "", `{"id":"inv"}`)), &cov)
	if cov.Total != 3 || cov.OK != 1 || cov.Fail != 1 || cov.Pending != 1 || cov.RunsOn != "backend" {
		t.Errorf("coverage %+v", cov)
	}
	var page CoverageReply
	json.Unmarshal([]byte(mustCall(t, r.nc, "kanade.schedules.coverage", "", `{"id":"inv","offset":1,"limit":1}`)), &page)
	if page.Total != 3 || len(page.Agents) != 1 || page.Agents[0].PCID != "PC-B" || page.NextOffset == nil || *page.NextOffset != 2 {
		t.Errorf("coverage page %+v", page)
	}
	var sum []CoverageRow
	json.Unmarshal([]byte(mustCall(t, r.nc, "kanade.schedules.coverage_summary", "", "")), &sum)
	if len(sum) != 1 || sum[0].Total != 3 || sum[0].OK != 1 {
		t.Errorf("coverage summary %+v", sum)
	}
	var st map[string]any
	json.Unmarshal([]byte(mustCall(t, r.nc, "kanade.schedules.status", "", `{"id":"inv"}`)), &st)
	if st["when"] != "per_pc once" || st["next_run"] != nil || st["last_run"] == nil ||
		st["recent"].(map[string]any)["ok"] != 1.0 || st["recent"].(map[string]any)["fail"] != 1.0 {
		t.Errorf("status %v", st)
	}
	pv := mustCall(t, r.nc, "kanade.schedules.preview", "", `{"id":"inv"}`)
	if pv != `{"id":"inv","when":"per_pc once","tz":"utc","enabled":true,"fires":[],"note":"reconcile cadence (per_pc once) polls every minute gated by cooldown — no discrete fire times to preview"}` {
		t.Errorf("preview %s", pv)
	}
	if y := mustCall(t, r.nc, "kanade.schedules.yaml", "", `{"id":"inv"}`); y != yamlBody {
		t.Errorf("yaml mirror %q", y)
	}
	mustCall(t, r.nc, "kanade.schedules.disable", "", `{"id":"inv","cascade":"true"}`)
	if y := mustCall(t, r.nc, "kanade.schedules.yaml", "", `{"id":"inv"}`); !strings.HasSuffix(y, "\nenabled: false\n") {
		t.Errorf("yaml after disable %q", y)
	}
	stored := mustCall(t, r.nc, "kanade.schedules.get", "", `{"id":"inv"}`)
	if stored != `{"id":"inv","when":{"per_pc":"once"},"job_id":"echo","target":{"groups":[],"pcs":[],"all":true},"tz":"utc","runs_on":"backend","enabled":false}` {
		t.Errorf("stored after disable %s", stored)
	}
	if err := upstreamDecode([]byte(stored)); err != nil {
		t.Error(err)
	}
	ss, _ := r.n.JetStream(t).KeyValue(context.Background(), BucketScriptStatus)
	if e, err := ss.Get(context.Background(), "echo"); err != nil || string(e.Value()) != "REVOKED" {
		t.Errorf("script_status: %v %v", err, e)
	}
	// A JSON job gets a YAML mirror dump in its key order.
	if y := mustCall(t, r.nc, "kanade.jobs.yaml", "", `{"job_id":"echo"}`); !strings.Contains(y, "\nid: echo\n") || !strings.Contains(y, "\n  shell: sh\n") {
		t.Errorf("job yaml %q", y)
	}
	if code, msg := call(t, r.nc, "kanade.schedules.yaml", "", `{"id":"nope"}`); code != 404 || msg != "schedule 'nope' not found" {
		t.Errorf("yaml unknown: %d %s", code, msg)
	}
	var schema map[string]any
	if err := json.Unmarshal([]byte(mustCall(t, r.nc, "kanade.schedules.schema", "", "")), &schema); err != nil || schema["title"] != "Schedule" {
		t.Errorf("schema %v %v", err, schema["title"])
	}
	// Calendar preview: upstream's shape and +00:00 instants, filtered
	// by the gates.
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"pt","when":{"calendar":{"at":"09:00","days":["tue#2"]}},"job_id":"echo","target":{"all":true},"tz":"utc","constraints":{"skip_dates":["2026-07-14"]}}`)
	pv = mustCall(t, r.nc, "kanade.schedules.preview", "", `{"id":"pt","count":2}`)
	if pv != `{"id":"pt","when":"at 09:00 [tue#2]","tz":"utc","enabled":true,"fires":["2026-06-09T09:00:00+00:00","2026-08-11T09:00:00+00:00"]}` {
		t.Errorf("preview %s", pv)
	}
	// A cron schedule with an exact calendar is stored as one.
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"weekday","job_id":"echo","cron":"0 0 9 * * 1-5","tz":"UTC"}`)
	upstreamReadable(t, r.n)
}

// The spec's one-shot with a wave rollout (example 4): at its time the
// first wave's group gets the Command, the second 30 min later, and the
// one-shot never fires again.
func TestCalendarOneShotWaves(t *testing.T) {
	r := startRig(t, t0, 1, "PC-A", "PC-B", "PC-C")
	r.fleet.set(func() {
		r.fleet.groups["PC-A"] = []string{"canary"}
		r.fleet.groups["PC-B"] = []string{"wave1"}
	})
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"patch-2026-06","when":{"calendar":{"at":"2026-06-01 12:05"}},"job_id":"echo","target":{"groups":["canary","wave1"],"pcs":[],"all":false},"rollout":{"strategy":"wave","waves":[{"group":"canary","delay":"0s"},{"group":"wave1","delay":"30m"}]},"active":{"until":"2026-07-01"},"tz":"utc","runs_on":"backend","enabled":true}`)
	var up []Upcoming
	json.Unmarshal([]byte(mustCall(t, r.nc, "kanade.schedules.upcoming", "", `{}`)), &up)
	if len(up) != 1 || up[0].When != "at 2026-06-01 12:05" || up[0].NextRun != "2026-06-01T12:05:00Z" {
		t.Errorf("upcoming %+v", up)
	}
	r.poll(t, minute(5), "patch-2026-06")
	r.fleet.wantRuns(map[string]int{"PC-A": 1})
	r.clock.waitArmed(t, minute(35))
	r.clock.Set(minute(35))
	r.fleet.wantRuns(map[string]int{"PC-A": 1, "PC-B": 1})
	json.Unmarshal([]byte(mustCall(t, r.nc, "kanade.schedules.upcoming", "", `{}`)), &up)
	if len(up) != 0 {
		t.Errorf("a fired one-shot is still upcoming: %+v", up)
	}
}

// per_pc once_per_version re-arms every PC when the job's version changes.
func TestReconcileOncePerVersion(t *testing.T) {
	r := startRig(t, t0, 1, "PC-A")
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"pv","when":{"per_pc":"once_per_version"},"job_id":"echo","target":{"all":true},"tz":"utc"}`)
	r.poll(t, minute(1), "pv")
	r.fleet.wantRuns(map[string]int{"PC-A": 1})
	r.poll(t, minute(2), "pv")
	r.fleet.wantRuns(map[string]int{"PC-A": 1})
	mustCall(t, r.nc, "kanade.jobs.put", "", strings.Replace(echoJob, `"1.0.0"`, `"2.0.0"`, 1))
	// The job mirror has the new version before the next poll.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if m, _ := r.nodes[0].Engine.o.JobCache.Get("echo"); m.Version == "2.0.0" || time.Now().After(deadline) {
			break
		}
	}
	r.poll(t, minute(3), "pv")
	r.fleet.wantRuns(map[string]int{"PC-A": 2})
	if v := r.fleet.cmds[1].Version; v != "2.0.0" {
		t.Errorf("second run at version %s", v)
	}
}

// Calendar nth and last weekdays fire on their days across months.
func TestCalendarNthAndLastFire(t *testing.T) {
	r := startRig(t, t0, 1, "PC-A", "PC-B")
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"patch-tuesday","when":{"calendar":{"at":"09:00","days":["tue#2"]}},"job_id":"echo","target":{"pcs":["PC-A"]},"tz":"utc"}`)
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"month-end","when":{"calendar":{"at":"22:00","days":["friL"]}},"job_id":"echo","target":{"pcs":["PC-B"]},"tz":"utc"}`)
	want := map[string]int{}
	for _, f := range []struct {
		at, id, pc string
	}{
		{"2026-06-09T09:00:00Z", "patch-tuesday", "PC-A"},
		{"2026-06-26T22:00:00Z", "month-end", "PC-B"},
		{"2026-07-14T09:00:00Z", "patch-tuesday", "PC-A"},
		{"2026-07-31T22:00:00Z", "month-end", "PC-B"},
	} {
		at := mustTime(t, f.at)
		r.poll(t, at, f.id)
		want[f.pc]++
		r.fleet.wantRuns(want)
	}
}

// disable with cascade_kill stops the job's runs in flight.
func TestDisableCascadeKill(t *testing.T) {
	r := startRig(t, t0, 1, "PC-A")
	r.fleet.set(func() { r.fleet.hold["PC-A"] = true })
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"k","when":{"per_pc":"once"},"job_id":"echo","target":{"all":true},"tz":"utc"}`)
	r.poll(t, minute(1), "k")
	r.fleet.wantRuns(map[string]int{"PC-A": 1})
	kills := subscribeCommands(t, r.nc, "kill.>")
	mustCall(t, r.nc, "kanade.schedules.disable", "", `{"id":"k","cascade_kill":true}`)
	select {
	case m := <-kills.ch:
		if m.Subject != "kill."+*r.fleet.cmds[0].ExecID {
			t.Errorf("kill on %s", m.Subject)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no kill")
	}
}

// A dispatch to more PCs than one execution carries is split, each part
// with its own ids, every PC reached once.
func TestReconcileLargeDispatchSplits(t *testing.T) {
	pcs := make([]string, pollChunk+5)
	for i := range pcs {
		pcs[i] = fmt.Sprintf("PC-%05d", i)
	}
	r := startRig(t, t0, 1, pcs...)
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"big","when":{"per_pc":"once"},"job_id":"echo","target":{"all":true},"tz":"utc"}`)
	r.poll(t, minute(1), "big")
	want := map[string]int{}
	for _, pc := range pcs {
		want[pc] = 1
	}
	r.fleet.wantRuns(want)
	execs := map[string]bool{}
	for _, c := range r.fleet.cmds {
		execs[*c.ExecID] = true
	}
	if first, _ := TickIDs("big", minute(1)); len(execs) != 2 || !execs[first] {
		t.Errorf("%d executions %v", len(execs), execs)
	}
}

func TestMarkKeys(t *testing.T) {
	if k := pcMarkKey("collect-winlog-events", "PC-01"); k != "pc.21.collect-winlog-events.5.PC-01" {
		t.Errorf("key %s", k)
	}
	for key, want := range map[string][2]string{
		"pc.21.collect-winlog-events.5.PC-01": {"collect-winlog-events", "PC-01"},
		"pc.3.a.b.4.x.yz":                     {"a.b", "x.yz"},
		"target.4.inv1":                       {"inv1", ""},
	} {
		sid, pc, ok := parseMarkKey(key)
		if !ok || sid != want[0] || pc != want[1] {
			t.Errorf("%s: %q %q %v", key, sid, pc, ok)
		}
	}
	for _, bad := range []string{"pc.3.abc", "pc.9.a.1.b", "target.2.abc", "other.1.a", "pc.x.a.1.b"} {
		if _, _, ok := parseMarkKey(bad); ok {
			t.Errorf("%s parsed", bad)
		}
	}
}

// A calendar tick missed while no engine ran fires late, once, within
// starting_deadline (example 3's shape): deadline_at = tick + deadline.
func TestCalendarCatchUpWithinDeadline(t *testing.T) {
	n := nodetest.Start(t)
	ctx := context.Background()
	cat := catalogOf(t, n)
	if _, err := cat.PutJob(ctx, []byte(echoJob), ""); err != nil {
		t.Fatal(err)
	}
	// The engine comes up 10 min after a 30 min deadline's tick, two days
	// after the schedule was written.
	start := time.Now().UTC().Add(48 * time.Hour).Truncate(time.Minute)
	tick := start.Add(-10 * time.Minute)
	body := fmt.Sprintf(`{"id":"morning-greeting","when":{"calendar":{"at":"%s","days":["%s"]}},"job_id":"echo","target":{"all":true},"tz":"utc","starting_deadline":"30m"}`,
		tick.Format("15:04"), strings.ToLower(tick.Weekday().String()[:3]))
	if _, err := cat.PutSchedule(ctx, []byte(body), ""); err != nil {
		t.Fatal(err)
	}
	nc := n.Conn(t)
	cmds := subscribeCommands(t, nc, wire.SubjectCommandsAll)
	s := startScheduler(t, n, "a", newFakeClock(start))
	waitSynced(t, s)
	c, _ := cmds.next(t)
	wantTick(t, c, "morning-greeting", tick)
	if c.DeadlineAt == nil || !c.DeadlineAt.Equal(tick.Add(30*time.Minute)) {
		t.Errorf("deadline_at %v, want %v", c.DeadlineAt, tick.Add(30*time.Minute))
	}
	cmds.none(t, nc)
}

// A finished_at in the future (an agent's clock, or a hostile agent a year
// ahead) counts as when the backend recorded the run: the cooldown runs
// from there, and the PC is dispatched again when it ends, through the
// incremental read and the job's full read alike.
func TestReconcileFutureFinishClamped(t *testing.T) {
	r := startRig(t, t0, 1, "PC-A", "PC-B")
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"inv","when":{"per_pc":{"every":"6h"}},"job_id":"echo","target":{"all":true},"tz":"utc"}`)
	r.poll(t, minute(1), "inv")
	r.fleet.wantRuns(map[string]int{"PC-A": 1, "PC-B": 1})
	ahead := store.FormatTime(minute(1).AddDate(1, 0, 0))
	if _, err := r.n.DB.W.Exec(`UPDATE execution_results SET finished_at = ? WHERE pc_id = 'PC-A'`, ahead); err != nil {
		t.Fatal(err)
	}
	r.poll(t, minute(2), "inv") // the incremental read sees the row
	r.fleet.wantRuns(map[string]int{"PC-A": 1, "PC-B": 1})
	r.jump(t, minute(6*60))
	r.poll(t, minute(6*60+1), "inv")
	r.fleet.wantRuns(map[string]int{"PC-A": 2, "PC-B": 2})
	// The cache read at minute 2; a fresh read of the job agrees.
	runs, err := jobRuns(context.Background(), r.n.DB, "echo", "", minute(6*60+1))
	if err != nil {
		t.Fatal(err)
	}
	if got := runs.Get("PC-A"); got.lastOK.After(minute(6*60 + 1)) {
		t.Errorf("PC-A's last success %v, in the future", got.lastOK)
	}
}
