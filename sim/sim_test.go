package sim_test

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/sim"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// startFleet starts a fleet on its own connection, stopped at test end.
func startFleet(t *testing.T, n *nodetest.Node, o sim.Options) *sim.Fleet {
	t.Helper()
	o.Conn = n.Conn(t)
	o.Logger = n.Logger
	f, err := sim.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	return f
}

func command(script string, execID bool) wire.Command {
	c := wire.Command{
		ID: "job-" + uuid.NewString()[:8], Version: "1.0.0", RequestID: uuid.NewString(),
		Shell: wire.ShellSh, Script: script, TimeoutSecs: 60, RunAs: "system",
		Staleness: wire.Staleness{Mode: "cached"},
	}
	if execID {
		e := uuid.NewString()
		c.ExecID = &e
	}
	return c
}

// publish publishes cmd through JetStream on each subject, as the backend does.
func publish(t *testing.T, js jetstream.JetStream, cmd wire.Command, subjects ...string) {
	t.Helper()
	b, _ := json.Marshal(cmd)
	for _, s := range subjects {
		if _, err := js.Publish(context.Background(), s, b); err != nil {
			t.Fatalf("publish %s: %v", s, err)
		}
	}
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitIdle waits until the fleet accepted want Commands and every run has
// published (a run counts as running until its publishes are acked).
func waitIdle(t *testing.T, f *sim.Fleet, want int64) sim.Stats {
	t.Helper()
	var s sim.Stats
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s = f.Stats(); s.Commands >= want && s.Running == 0 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for the fleet to finish its runs: %d of %d Commands accepted, %d running (stats %+v)",
				s.Commands, want, s.Running, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type stored struct {
	data []byte
	at   time.Time
	seq  uint64
}

// messages reads every message of stream on subject.
func messages(t *testing.T, js jetstream.JetStream, stream, subject string) []stored {
	t.Helper()
	ctx := context.Background()
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for pending := int(info.NumPending); len(out) < pending; {
		batch, err := c.Fetch(pending-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			md, _ := m.Metadata()
			out = append(out, stored{data: m.Data(), at: md.Timestamp, seq: md.Sequence.Stream})
		}
		if batch.Error() != nil {
			t.Fatal(batch.Error())
		}
	}
	return out
}

func results(t *testing.T, js jetstream.JetStream, requestID string) map[string]wire.ExecResult {
	t.Helper()
	byPC := map[string]wire.ExecResult{}
	for _, m := range messages(t, js, wire.StreamResults, wire.Results(requestID)) {
		r, err := wire.DecodeResult(m.data)
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := byPC[r.PCID]; dup {
			t.Errorf("two results from %s for request %s", r.PCID, requestID)
		}
		byPC[r.PCID] = r
	}
	return byPC
}

func TestGroupExecOneResultPerMember(t *testing.T) {
	for _, mode := range []sim.Subscriptions{sim.Shared, sim.PerAgent} {
		t.Run(string(mode), func(t *testing.T) {
			n := nodetest.Start(t)
			f := startFleet(t, n, sim.Options{Agents: 6, Groups: []string{"g1", "g2"}, Subscriptions: mode})
			js := n.JetStream(t)
			cmd := command("# sim: outcome=success duration=50ms output=256", true)
			publish(t, js, cmd, wire.CommandsGroup("g1"))
			members := f.Members("g1")
			if len(members) != 3 {
				t.Fatalf("g1 members: %v", members)
			}
			waitIdle(t, f, int64(len(members)))

			got := results(t, js, cmd.RequestID)
			if pcs := slices.Sorted(maps.Keys(got)); !slices.Equal(pcs, members) {
				t.Fatalf("results from %v, want one from each of %v", pcs, members)
			}
			resultAt := map[string]time.Time{}
			for _, m := range messages(t, js, wire.StreamResults, wire.Results(cmd.RequestID)) {
				r, _ := wire.DecodeResult(m.data)
				resultAt[r.ResultID] = m.at
			}
			for pc, r := range got {
				if r.ExitCode != 0 || r.ExecID == nil || *r.ExecID != *cmd.ExecID || r.ManifestID == nil || *r.ManifestID != cmd.ID {
					t.Errorf("%s: result %+v", pc, r)
				}
				if u, err := uuid.Parse(r.ResultID); err != nil || u.Version() != 4 {
					t.Errorf("%s: result_id %q is not a UUIDv4", pc, r.ResultID)
				}
				if !strings.Contains(r.Stdout, "progress 100%") || r.FinishedAt.Before(r.StartedAt) {
					t.Errorf("%s: stdout %q, %v..%v", pc, r.Stdout, r.StartedAt, r.FinishedAt)
				}
				ev := messages(t, js, wire.StreamEvents, wire.Started(*cmd.ExecID, pc))
				if len(ev) != 1 {
					t.Fatalf("%s: %d EventStarted, want 1", pc, len(ev))
				}
				e, err := wire.DecodeStarted(ev[0].data)
				if err != nil {
					t.Fatal(err)
				}
				if e.ResultID != r.ResultID || e.RequestID != cmd.RequestID || !e.StartedAt.Equal(r.StartedAt) {
					t.Errorf("%s: EventStarted %+v does not match result %+v", pc, e, r)
				}
				if ev[0].at.After(resultAt[r.ResultID]) {
					t.Errorf("%s: EventStarted stored at %v, after its result at %v", pc, ev[0].at, resultAt[r.ResultID])
				}
			}
		})
	}
}

func TestDeduplicatesAcrossSubjects(t *testing.T) {
	n := nodetest.Start(t)
	f := startFleet(t, n, sim.Options{Agents: 4, Groups: []string{"g1"}})
	js := n.JetStream(t)
	cmd := command("# sim: outcome=success duration=0s", false) // ad hoc: no exec_id
	publish(t, js, cmd, wire.SubjectCommandsAll, wire.CommandsGroup("g1"), wire.CommandsPC("sim-pc-0001"))
	// 4 agents see all + group, one also its pc subject: 9 deliveries, 4 runs.
	waitFor(t, "every delivery", func() bool { s := f.Stats(); return s.Commands+s.Duplicates == 9 })
	s := waitIdle(t, f, 4)
	if s.Commands != 4 || s.Duplicates != 5 || s.ResultsPublished != 4 {
		t.Fatalf("stats %v", s)
	}
	if got := results(t, js, cmd.RequestID); len(got) != 4 {
		t.Fatalf("%d results, want 4", len(got))
	}
	for _, r := range results(t, js, cmd.RequestID) {
		if r.ExecID != nil {
			t.Errorf("ad-hoc result carries exec_id %q", *r.ExecID)
		}
	}
	if ev := messages(t, js, wire.StreamEvents, wire.SubjectEventsAll); len(ev) != 0 {
		t.Fatalf("an ad-hoc Command produced %d EventStarted", len(ev))
	}
}

func tail(t *testing.T, nc *nats.Conn, pc, resultID string) (wire.JobTailReply, string) {
	t.Helper()
	b, _ := json.Marshal(wire.JobTailRequest{ResultID: resultID})
	m, err := nc.Request(wire.JobTail(pc), b, 5*time.Second)
	if err != nil {
		t.Fatalf("job.tail.%s: %v", pc, err)
	}
	var r wire.JobTailReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	return r, string(m.Data)
}

func TestTailWhileRunningThenKill(t *testing.T) {
	n := nodetest.Start(t)
	f := startFleet(t, n, sim.Options{Agents: 2})
	js := n.JetStream(t)
	nc := n.Conn(t)

	// Slow enough to tail for as long as the test needs: a line every 100 ms.
	cmd := command("# sim: outcome=success duration=1h output=2MiB", true)
	publish(t, js, cmd, wire.SubjectCommandsAll)
	var started []stored
	waitFor(t, "both runs to start", func() bool {
		started = messages(t, js, wire.StreamEvents, "events.started."+*cmd.ExecID+".*")
		return len(started) == 2
	})
	ev, _ := wire.DecodeStarted(started[0].data)

	first, _ := tail(t, nc, ev.PCID, ev.ResultID)
	if !first.Found || !first.Running {
		t.Fatalf("first tail %+v", first)
	}
	var later wire.JobTailReply
	// The first tail may come before any line, or between the header
	// line and the first progress line.
	waitFor(t, "the live output to grow past a progress line", func() bool {
		later, _ = tail(t, nc, ev.PCID, ev.ResultID)
		return len(later.Stdout) > len(first.Stdout) && strings.Contains(later.Stdout, "progress")
	})
	if !later.Running || !strings.HasPrefix(later.Stdout, first.Stdout) {
		t.Fatalf("tail went from %q to %q", first.Stdout, later.Stdout)
	}
	if _, raw := tail(t, nc, ev.PCID, uuid.NewString()); raw != `{"found":false}` {
		t.Fatalf("unknown result_id answered %s", raw)
	}

	if err := nc.Publish(wire.Kill(*cmd.ExecID), nil); err != nil {
		t.Fatal(err)
	}
	s := waitIdle(t, f, 2)
	if s.Kills != 2 {
		t.Fatalf("stats %v", s)
	}
	got := results(t, js, cmd.RequestID)
	if len(got) != 2 {
		t.Fatalf("%d results after kill, want 2", len(got))
	}
	for pc, r := range got {
		if r.ExitCode != wire.ExitKilled || !strings.Contains(r.Stderr, "killed by kill."+*cmd.ExecID) {
			t.Errorf("%s: exit %d stderr %q", pc, r.ExitCode, r.Stderr)
		}
	}
	// A finished run answers for a while, no longer running.
	after, _ := tail(t, nc, ev.PCID, ev.ResultID)
	if !after.Found || after.Running || !strings.Contains(after.Stderr, "killed") {
		t.Fatalf("tail after kill %+v", after)
	}
}

func TestDeadlinePassedAndTimeout(t *testing.T) {
	n := nodetest.Start(t)
	f := startFleet(t, n, sim.Options{Agents: 1})
	js := n.JetStream(t)

	late := command("# sim: outcome=success duration=0s", true)
	past := time.Now().Add(-time.Minute).UTC()
	late.DeadlineAt = &past
	hung := command("# sim: outcome=timeout", true)
	hung.TimeoutSecs = 1
	pwsh := command("Get-Date", true)
	pwsh.Shell = "bash"                                   // not a shell of the contract
	exits := command("# sim: exit=125 duration=0s", true) // a script that ran and exited 125
	publish(t, js, late, wire.SubjectCommandsAll)
	publish(t, js, hung, wire.SubjectCommandsAll)
	publish(t, js, pwsh, wire.SubjectCommandsAll)
	publish(t, js, exits, wire.SubjectCommandsAll)
	waitIdle(t, f, 4)

	// Deliberate non-runs are skipped; runs, whatever their exit, are not.
	r := results(t, js, late.RequestID)["sim-pc-0001"]
	if r.ExitCode != wire.ExitDeadline || !strings.Contains(r.Stderr, "deadline_at") || !r.Skipped {
		t.Errorf("past deadline: exit %d skipped %v stderr %q", r.ExitCode, r.Skipped, r.Stderr)
	}
	if r := results(t, js, exits.RequestID)["sim-pc-0001"]; r.ExitCode != 125 || r.Skipped {
		t.Errorf("a run that exited 125: exit %d skipped %v", r.ExitCode, r.Skipped)
	}
	if ev := messages(t, js, wire.StreamEvents, wire.Started(*late.ExecID, "sim-pc-0001")); len(ev) != 0 {
		t.Errorf("a Command past its deadline was started")
	}
	r = results(t, js, hung.RequestID)["sim-pc-0001"]
	if r.ExitCode != wire.ExitKilled || !strings.Contains(r.Stderr, "timed out after 1s") || r.Skipped {
		t.Errorf("timeout: exit %d skipped %v stderr %q", r.ExitCode, r.Skipped, r.Stderr)
	}
	r = results(t, js, pwsh.RequestID)["sim-pc-0001"]
	if r.ExitCode != wire.ExitUnsupported || !r.Skipped {
		t.Errorf("unknown shell: exit %d skipped %v", r.ExitCode, r.Skipped)
	}
}

func TestExecRunsSh(t *testing.T) {
	n := nodetest.Start(t)
	f := startFleet(t, n, sim.Options{Agents: 1, Exec: true})
	js := n.JetStream(t)

	ok := command(`echo "hello from $KANADE_PC_ID"; echo oops >&2; exit 3`, true)
	ps := command("Get-Date", true)
	ps.Shell = wire.ShellPowershell
	slow := command("sleep 30; echo never", true)
	slow.TimeoutSecs = 1
	big := command(`i=0; while [ $i -lt 5000 ]; do echo "line $i of a long output that goes past the object threshold"; i=$((i+1)); done`, false)
	for _, c := range []wire.Command{ok, ps, slow, big} {
		publish(t, js, c, wire.CommandsPC("sim-pc-0001"))
	}
	waitIdle(t, f, 4)

	r := results(t, js, ok.RequestID)["sim-pc-0001"]
	if r.ExitCode != 3 || r.Stdout != "hello from sim-pc-0001\n" || r.Stderr != "oops\n" || r.Skipped {
		t.Errorf("sh: exit %d stdout %q stderr %q skipped %v", r.ExitCode, r.Stdout, r.Stderr, r.Skipped)
	}
	if r := results(t, js, ps.RequestID)["sim-pc-0001"]; r.ExitCode != wire.ExitUnsupported || !r.Skipped {
		t.Errorf("powershell with --exec: exit %d skipped %v, want 122 skipped", r.ExitCode, r.Skipped)
	}
	if r := results(t, js, slow.RequestID)["sim-pc-0001"]; r.ExitCode != wire.ExitKilled || strings.Contains(r.Stdout, "never") {
		t.Errorf("timeout: exit %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	r = results(t, js, big.RequestID)["sim-pc-0001"]
	if r.Stdout != "" || r.StdoutObject == nil || *r.StdoutObject != wire.OutputObjectKey(big.RequestID, "stdout") {
		t.Fatalf("large stdout: %d bytes inline, object %v", len(r.Stdout), r.StdoutObject)
	}
	obs, err := js.ObjectStore(context.Background(), wire.ObjectStoreOutput)
	if err != nil {
		t.Fatal(err)
	}
	data, err := obs.GetBytes(context.Background(), *r.StdoutObject)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(data), "\n"); lines != 5000 || !strings.HasPrefix(string(data), "line 0 of") {
		t.Fatalf("stored stdout has %d lines", lines)
	}
}

func TestHeartbeatPingAndGroups(t *testing.T) {
	n := nodetest.Start(t)
	nc := n.Conn(t)
	beats := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(wire.SubjectHeartbeatsAll, beats)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()

	f := startFleet(t, n, sim.Options{Agents: 3, Groups: []string{"a", "b"}, Heartbeat: 200 * time.Millisecond})
	seen := map[string]int{}
	waitFor(t, "two heartbeats from every agent", func() bool {
		for {
			select {
			case m := <-beats:
				h, err := wire.DecodeHeartbeat(m.Data)
				if err != nil || m.Subject != wire.HeartbeatSubject(h.PCID) || h.AgentVersion == "" || h.At.IsZero() {
					t.Fatalf("heartbeat on %s: %s (%v)", m.Subject, m.Data, err)
				}
				seen[h.PCID]++
			default:
				return len(seen) == 3 && seen["sim-pc-0001"] >= 2 && seen["sim-pc-0003"] >= 2
			}
		}
	})

	m, err := nc.Request(wire.Ping("sim-pc-0002"), []byte(`{}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := wire.DecodeHeartbeat(m.Data); err != nil || h.PCID != "sim-pc-0002" {
		t.Fatalf("ping answered %s (%v)", m.Data, err)
	}
	if _, err := nc.Request(wire.Ping("not-ours"), nil, 200*time.Millisecond); err == nil {
		t.Fatal("a pc_id outside the fleet answered a ping")
	}

	kv, err := n.JetStream(t).KeyValue(context.Background(), wire.BucketAgentGroups)
	if err != nil {
		t.Fatal(err)
	}
	for pc, want := range map[string]string{"sim-pc-0001": `{"groups":["a"]}`, "sim-pc-0002": `{"groups":["b"]}`, "sim-pc-0003": `{"groups":["a"]}`} {
		e, err := kv.Get(context.Background(), pc)
		if err != nil || string(e.Value()) != want {
			t.Errorf("agent_groups %s: %v %q, want %s", pc, err, e, want)
		}
	}
	if s := f.Stats(); s.PingsAnswered != 1 {
		t.Errorf("stats %v", s)
	}
}

func TestReplayRunsTheLastKeptCommand(t *testing.T) {
	n := nodetest.Start(t)
	js := n.JetStream(t)
	cmd := command("# sim: outcome=success duration=0s", true)
	publish(t, js, cmd, wire.CommandsPC("sim-pc-0002"))

	f := startFleet(t, n, sim.Options{Agents: 3, Replay: true})
	waitIdle(t, f, 1)
	got := results(t, js, cmd.RequestID)
	if _, ok := got["sim-pc-0002"]; !ok || len(got) != 1 {
		t.Fatalf("replayed results from %v, want sim-pc-0002 only", got)
	}
}

func TestPublishRetriesUntilAcked(t *testing.T) {
	n := nodetest.Start(t)
	f := startFleet(t, n, sim.Options{Agents: 1})
	js := n.JetStream(t)
	ctx := context.Background()

	// No RESULTS stream: the result cannot be acked until it is back.
	if err := js.DeleteStream(ctx, wire.StreamResults); err != nil {
		t.Fatal(err)
	}
	cmd := command("# sim: outcome=success duration=0s", false)
	publish(t, js, cmd, wire.SubjectCommandsAll)
	waitFor(t, "a retried publish", func() bool { return f.Stats().PublishRetries >= 2 })
	if s := f.Stats(); s.Running != 1 || s.ResultsPublished != 0 {
		t.Fatalf("stats while unacked: %v", s)
	}
	if err := streams.Ensure(ctx, js, 1, n.Logger); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, f, 1)
	if got := results(t, js, cmd.RequestID); len(got) != 1 {
		t.Fatalf("%d results after the stream came back, want 1", len(got))
	}

	// Stopping gives up on a publish that cannot be acked.
	if err := js.DeleteStream(ctx, wire.StreamResults); err != nil {
		t.Fatal(err)
	}
	publish(t, js, command("# sim: outcome=success duration=0s", false), wire.SubjectCommandsAll)
	waitFor(t, "another retried publish", func() bool { return f.Stats().PublishRetries >= 4 })
	stopped := make(chan struct{})
	go func() { f.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("Stop hangs on an unacked publish")
	}
}
