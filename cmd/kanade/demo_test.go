package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/scheduler"
	"github.com/kanade-go/kanade/sim"
	"github.com/kanade-go/kanade/wire"
)

func TestServeDemo(t *testing.T) {
	dir := t.TempDir()
	p := startKanade(t, dir, "--demo")
	nc, err := nats.Connect(p.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()

	// The demo starts right after the ready line: its last agent answers
	// pings once it is up.
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := nc.Request(wire.Ping("sim-pc-0025"), nil, time.Second)
		if err == nil {
			if h, err := wire.DecodeHeartbeat(m.Data); err != nil || h.PCID != "sim-pc-0025" {
				t.Fatalf("ping answered %s (%v)", m.Data, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo agents never answered: %v\n%s", err, p.Stderr())
		}
	}

	jobs, _ := js.KeyValue(ctx, wire.BucketJobs)
	for _, want := range sim.DemoJobs() {
		e, err := jobs.Get(ctx, want.ID)
		if err != nil {
			t.Fatalf("job %s: %v", want.ID, err)
		}
		// The scheduler reads the catalog: the seeded entry must be a
		// manifest it accepts, carrying what the demo meant.
		m, _, err := scheduler.ParseManifest(e.Value(), "application/json")
		if err != nil || m.ID != want.ID || m.Execute.Script != want.Execute.Script || string(m.Execute.Timeout) != want.Execute.Timeout {
			t.Fatalf("job %s: %s (%v)", want.ID, e.Value(), err)
		}
	}
	schedules, _ := js.KeyValue(ctx, wire.BucketSchedules)
	for _, want := range sim.DemoSchedules() {
		e, err := schedules.Get(ctx, want.ID)
		if err != nil {
			t.Fatalf("schedule %s: %v", want.ID, err)
		}
		c, _, err := scheduler.ParseSchedule(e.Value(), "application/json")
		if err != nil || c.Cron != want.Cron || c.Enabled == nil || !*c.Enabled || c.JobID != want.JobID || !c.Target.All {
			t.Fatalf("schedule %s: %s (%v)", want.ID, e.Value(), err)
		}
	}
	// Groups are written after the agents subscribe.
	groups, _ := js.KeyValue(ctx, wire.BucketAgentGroups)
	for {
		keys, err := groups.Keys(ctx)
		if err == nil && len(keys) == sim.DemoAgents {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent_groups: %d keys (%v)", len(keys), err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The operator turns the demo schedule off; a restart keeps it off.
	sched := sim.DemoSchedules()[0]
	sched.Enabled = false
	b, _ := json.Marshal(sched)
	if _, err := schedules.Put(ctx, sched.ID, b); err != nil {
		t.Fatal(err)
	}
	nc.Close()

	if err, _ := p.stop(t); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	log := p.Stderr()
	demoStopped, nodeStopping := strings.Index(log, `msg="demo stopped"`), strings.Index(log, "msg=stopping")
	if demoStopped < 0 || nodeStopping < 0 || demoStopped > nodeStopping {
		t.Fatalf("the demo must stop before the node:\n%s", log)
	}

	p = startKanade(t, dir, "--demo")
	nc, err = nats.Connect(p.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = jetstream.New(nc)
	schedules, _ = js.KeyValue(ctx, wire.BucketSchedules)
	e, err := schedules.Get(ctx, sched.ID)
	if err != nil {
		t.Fatal(err)
	}
	var after sim.Schedule
	if err := json.Unmarshal(e.Value(), &after); err != nil || after.Enabled {
		t.Fatalf("after a restart the schedule is %s (%v): the demo overwrote the operator's change", e.Value(), err)
	}
	if err, _ := p.stop(t); err != nil {
		t.Fatalf("second SIGTERM: %v", err)
	}
}

func TestServeDemoNeedsAListener(t *testing.T) {
	err, stderr := runKanade(t, 30*time.Second, "serve", "--demo", "--nats-listen", "off", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0")
	if err == nil || !strings.Contains(stderr, "--demo needs a NATS client listener") {
		t.Fatalf("--demo with --nats-listen off: %v %s", err, stderr)
	}
}
