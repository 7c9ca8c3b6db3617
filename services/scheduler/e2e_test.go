package scheduler

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/projector"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// Two scheduler instances on one NATS, a schedule firing every second: each
// tick produces exactly one Command, one execution record and, through the
// projector, one executions row.
func TestTwoInstancesFireEachTickOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 12 s of real time")
	}
	n := nodetest.Start(t)
	p, err := projector.Start(context.Background(), projector.Options{Conn: n.Conn(t), DB: n.DB, NodeName: "p", Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
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
	// A tick in flight when the schedule was disabled may still land: wait
	// until the Commands seen and the records stored agree and stay so.
	var recs []streams.ExecutionRecord
	for deadline, stable := time.Now().Add(15*time.Second), 0; stable < 3; time.Sleep(500 * time.Millisecond) {
		for drained := false; !drained; {
			select {
			case m := <-agent.ch:
				c := checkCommandShape(t, m.Data)
				if perExec[*c.ExecID] == 0 {
					order = append(order, *c.ExecID)
				}
				perExec[*c.ExecID]++
			default:
				drained = true
			}
		}
		recs = executionRecords(t, n.JetStream(t))
		if len(recs) == len(perExec) {
			stable++
		} else {
			stable = 0
		}
		if time.Now().After(deadline) {
			break
		}
	}
	for id, k := range perExec {
		if k != 1 {
			t.Errorf("exec %s: %d Commands, want 1", id, k)
		}
	}

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

	// The projector's rows: one per tick, exactly the records' exec_ids.
	var rows map[string]int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		rows = executionRows(t, n)
		if len(rows) >= len(recs) || time.Now().After(deadline) {
			break
		}
	}
	if len(rows) != len(recs) {
		t.Errorf("%d executions rows, want %d", len(rows), len(recs))
	}
	for id := range byExec {
		if rows[id] != 1 {
			t.Errorf("exec %s: %d executions rows", id, rows[id])
		}
	}
	t.Logf("%d ticks, each one Command, one record and one executions row", len(recs))
}

// executionRows counts the executions rows per exec_id of schedule ticks.
func executionRows(t *testing.T, n *nodetest.Node) map[string]int {
	t.Helper()
	rows, err := n.DB.R.Query(`SELECT exec_id, initiated_by, status FROM executions`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id, by, status string
		if err := rows.Scan(&id, &by, &status); err != nil {
			t.Fatal(err)
		}
		if by != "schedule:every-second" || status != "pending" {
			t.Errorf("row %s: initiated_by %q status %q", id, by, status)
		}
		out[id]++
	}
	return out
}
