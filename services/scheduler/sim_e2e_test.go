package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/projector"
	"github.com/kanade-go/kanade/sim"
)

// per_pc once with the project's simulated agents and the projector in the
// loop: every alive agent runs the job once (its result, projected into
// execution_results, is what the next poll reads), and the next poll
// dispatches nothing. The fake clock runs a few seconds ahead of the
// agents' real heartbeats.
func TestReconcileWithSimAgents(t *testing.T) {
	n := nodetest.Start(t)
	ctx := context.Background()
	p, err := projector.Start(ctx, projector.Options{Conn: n.Conn(t), DB: n.DB, NodeName: "p", Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	fleet, err := sim.Start(ctx, sim.Options{Conn: n.Conn(t), Agents: 4, Exec: true, Heartbeat: time.Second, Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Stop)
	alive := func() int {
		var k int
		n.DB.R.QueryRow(`SELECT COUNT(*) FROM agents WHERE last_heartbeat >= ?`, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)).Scan(&k)
		return k
	}
	for deadline := time.Now().Add(10 * time.Second); alive() < 4; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d agents alive", alive())
		}
	}
	m1 := time.Now().UTC().Truncate(time.Minute).Add(time.Minute)
	clock := newFakeClock(m1.Add(-time.Second))
	k := newTicks()
	s, err := Start(ctx, Options{Conn: n.Conn(t), DB: n.DB, NodeName: "a", Logger: n.Logger, Clock: clock, Observe: k.observe})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	waitSynced(t, s)
	nc := n.Conn(t)
	mustCall(t, nc, "kanade.jobs.put", "", `{"id":"hello","version":"1","execute":{"shell":"sh","script":"echo hello","timeout":"30s"}}`)
	mustCall(t, nc, "kanade.schedules.put", "", `{"id":"once","when":{"per_pc":"once"},"job_id":"hello","target":{"all":true},"tz":"utc"}`)
	runs := func() map[string]int {
		out := map[string]int{}
		rows, err := n.DB.R.Query(`SELECT pc_id, COUNT(*) FROM execution_results WHERE job_id = 'hello' AND exit_code = 0 GROUP BY pc_id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var pc string
			var c int
			rows.Scan(&pc, &c)
			out[pc] = c
		}
		return out
	}
	clock.waitArmed(t, m1)
	clock.Set(m1)
	k.wait(t, m1, 1, "once")
	for deadline := time.Now().Add(15 * time.Second); len(runs()) < 4; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("runs %v", runs())
		}
	}
	m2 := m1.Add(time.Minute)
	clock.waitArmed(t, m2)
	clock.Set(m2)
	k.wait(t, m2, 1, "once")
	time.Sleep(300 * time.Millisecond) // a Command sent would have run by now
	got := runs()
	if len(got) != 4 {
		t.Errorf("runs %v", got)
	}
	for pc, c := range got {
		if c != 1 {
			t.Errorf("%s ran %d times", pc, c)
		}
	}
	if cov, _ := s.Catalog.Coverage(ctx, "once", 0, 0); cov.OK != 4 || cov.Total != 4 {
		t.Errorf("coverage %+v", cov)
	}
}
