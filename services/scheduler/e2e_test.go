package scheduler

import (
	"sort"
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/wire"
)

// Two scheduler instances on one NATS, a schedule firing every second: each
// tick produces exactly one Command and one execution record.
func TestTwoInstancesFireEachTickOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 12 s of real time")
	}
	n := nodetest.Start(t)
	a := startScheduler(t, n, "node1", nil)
	b := startScheduler(t, n, "node2", nil)
	waitSynced(t, a)
	waitSynced(t, b)
	nc := n.Conn(t)
	agent := subscribeCommands(t, nc, wire.SubjectCommandsAll)
	mustCall(t, nc, "kanade.jobs.put", "", echoJob)
	mustCall(t, nc, "kanade.schedules.put", "", `{"id":"every-second","job_id":"echo","cron":"* * * * * *"}`)

	const ticks = 10
	perExec := map[string]int{}
	var order []string
	for len(order) < ticks {
		c, _ := agent.next(t)
		if c.ID != "echo" || c.Version != "1.0.0" {
			t.Fatalf("command %+v", c)
		}
		if perExec[*c.ExecID] == 0 {
			order = append(order, *c.ExecID)
		}
		perExec[*c.ExecID]++
	}
	mustCall(t, nc, "kanade.schedules.disable", "", `{"id":"every-second"}`)
	time.Sleep(1500 * time.Millisecond) // a tick in flight lands
	for {
		select {
		case m := <-agent.ch:
			c := checkCommandShape(t, m.Data)
			if perExec[*c.ExecID] == 0 {
				order = append(order, *c.ExecID)
			}
			perExec[*c.ExecID]++
			continue
		default:
		}
		break
	}
	for id, k := range perExec {
		if k != 1 {
			t.Errorf("exec %s: %d Commands, want 1", id, k)
		}
	}

	recs := executionRecords(t, n.JetStream(t))
	byExec := map[string]int{}
	var fired []time.Time
	for _, r := range recs {
		byExec[r.ExecID]++
		fired = append(fired, r.InitiatedAt)
		if r.InitiatedBy != "schedule:every-second" || r.TargetCount != 1 {
			t.Errorf("record %+v", r)
		}
		if want, _ := TickIDs("every-second", r.InitiatedAt); want != r.ExecID {
			t.Errorf("record exec_id %s is not derived from its tick %v", r.ExecID, r.InitiatedAt)
		}
	}
	if len(recs) != len(byExec) || len(recs) != len(perExec) || len(recs) < ticks {
		t.Errorf("%d records, %d distinct exec_ids, %d commands; want equal and at least %d", len(recs), len(byExec), len(perExec), ticks)
	}
	for id := range perExec {
		if byExec[id] != 1 {
			t.Errorf("command %s has %d records", id, byExec[id])
		}
	}
	// One per tick, no tick skipped.
	sort.Slice(fired, func(i, j int) bool { return fired[i].Before(fired[j]) })
	for i := 1; i < len(fired); i++ {
		if d := fired[i].Sub(fired[i-1]); d != time.Second {
			t.Errorf("ticks %v and %v are %v apart", fired[i-1], fired[i], d)
		}
	}
	t.Logf("%d ticks, each one Command and one record", len(recs))
}
