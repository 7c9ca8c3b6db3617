package sim_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/projector"
	"github.com/kanade-go/kanade/sim"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// startProjector projects the node's streams into its store until the
// test ends.
func startProjector(t *testing.T, n *nodetest.Node) {
	t.Helper()
	p, err := projector.Start(context.Background(), projector.Options{
		Conn: n.Conn(t), DB: n.DB, Logger: n.Logger, NoService: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
}

// execute records an execution of cmd on targets agents, as the exec
// service does, then publishes cmd on the broadcast subject.
func execute(t *testing.T, n *nodetest.Node, cmd wire.Command, targets int) {
	t.Helper()
	js := n.JetStream(t)
	rec, _ := json.Marshal(streams.ExecutionRecord{
		ExecID: *cmd.ExecID, RequestID: cmd.RequestID, JobID: cmd.ID, Version: cmd.Version, InitiatedBy: "test",
		InitiatedAt: time.Now().UTC(), TargetCount: targets, Target: json.RawMessage(`{"all":true}`),
		TimeoutSecs: cmd.TimeoutSecs,
	})
	if _, err := js.Publish(context.Background(), streams.ExecutionSubject(*cmd.ExecID), rec); err != nil {
		t.Fatal(err)
	}
	publish(t, js, cmd, wire.SubjectCommandsAll)
}

type counters struct {
	Status                                 string
	Success, Failure, Skipped, Rows, Ended int
}

// projected reads an execution's counters and its rows from the store.
func projected(t *testing.T, n *nodetest.Node, execID string) counters {
	t.Helper()
	var c counters
	err := n.DB.R.QueryRow(`SELECT status, success_count, failure_count, skipped_count,
		(SELECT count(*) FROM execution_results r WHERE r.exec_id = e.exec_id),
		(SELECT count(*) FROM execution_results r WHERE r.exec_id = e.exec_id AND finished_at IS NOT NULL)
		FROM executions e WHERE exec_id = ?`, execID).Scan(&c.Status, &c.Success, &c.Failure, &c.Skipped, &c.Rows, &c.Ended)
	if err == sql.ErrNoRows {
		return c
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Real agents publish without a message id, so a retry after a lost ack
// stores a duplicate; the projection must still end exact. With MsgIDs the
// streams drop the duplicates.
func TestDuplicatePublishesProjectExactly(t *testing.T) {
	for _, msgIDs := range []bool{false, true} {
		t.Run(fmt.Sprintf("msg-ids=%v", msgIDs), func(t *testing.T) {
			const agents = 6
			n := nodetest.Start(t)
			startProjector(t, n)
			mix := sim.Mix{Success: 1, Failure: 1, MaxDuration: 50 * time.Millisecond, OutputBytes: 256}
			f := startFleet(t, n, sim.Options{Agents: agents, Mix: mix, Duplicates: 1, MsgIDs: msgIDs})
			js := n.JetStream(t)

			ran := command("uname -a", true)
			late := command("# sim: outcome=success", true)
			past := time.Now().Add(-time.Minute).UTC()
			late.DeadlineAt = &past
			execute(t, n, ran, agents)
			execute(t, n, late, agents)
			s := waitIdle(t, f, 2*agents)
			if s.ResultsPublished != 2*agents || s.StartedPublished != agents || s.Duplicated != 3*agents {
				t.Fatalf("stats %v", s)
			}

			copies := 2
			if msgIDs {
				copies = 1
			}
			success := 0
			for _, req := range []string{ran.RequestID, late.RequestID} {
				msgs := messages(t, js, wire.StreamResults, wire.Results(req))
				if len(msgs) != copies*agents {
					t.Fatalf("RESULTS holds %d results of %s, want %d", len(msgs), req, copies*agents)
				}
				for _, m := range msgs {
					if r, _ := wire.DecodeResult(m.data); req == ran.RequestID && r.ExitCode == 0 {
						success++
					}
				}
			}
			success /= copies
			if ev := messages(t, js, wire.StreamEvents, wire.SubjectStartedAll); len(ev) != copies*agents {
				t.Fatalf("EVENTS holds %d, want %d", len(ev), copies*agents)
			}

			want := map[string]counters{
				*ran.ExecID:  {Status: "completed", Success: success, Failure: agents - success, Rows: agents, Ended: agents},
				*late.ExecID: {Status: "completed", Skipped: agents, Rows: agents, Ended: agents},
			}
			for id, w := range want {
				var got counters
				waitFor(t, "the execution to be projected", func() bool {
					got = projected(t, n, id)
					return got == w
				})
			}
			// Settled: every message of the streams is applied (the
			// offsets reach the streams' last sequences), and nothing was
			// counted twice.
			for _, name := range []string{wire.StreamResults, wire.StreamEvents, streams.StreamExecutions} {
				st, err := js.Stream(context.Background(), name)
				if err != nil {
					t.Fatal(err)
				}
				last := st.CachedInfo().State.LastSeq
				waitFor(t, name+" applied to its last message", func() bool {
					var off uint64
					n.DB.R.QueryRow(`SELECT last_seq FROM projector_offsets WHERE stream = ?`, name).Scan(&off)
					return off >= last
				})
			}
			for id, w := range want {
				if got := projected(t, n, id); got != w {
					t.Errorf("execution %s: %+v, want %+v", id, got, w)
				}
			}
		})
	}
}

// A broadcast has one request_id for all its agents: each agent's large
// output goes to its own object, and each row holds its own output.
func TestBroadcastLargeOutputsKeepTheirOwn(t *testing.T) {
	const agents = 5
	n := nodetest.Start(t)
	startProjector(t, n)
	f := startFleet(t, n, sim.Options{Agents: agents})
	js := n.JetStream(t)

	// duration=0s: the agents finish, and upload, together.
	cmd := command("# sim: outcome=success duration=0s output=300KiB", true)
	execute(t, n, cmd, agents)
	waitIdle(t, f, agents)

	base := wire.OutputObjectKey(cmd.RequestID, "stdout")
	var keys []string
	for pc, r := range results(t, js, cmd.RequestID) {
		if r.StdoutObject == nil || r.Stdout != "" {
			t.Fatalf("%s: stdout not moved to the object store (%d bytes inline)", pc, len(r.Stdout))
		}
		keys = append(keys, *r.StdoutObject)
	}
	slices.Sort(keys)
	wantKeys := []string{base}
	for i := 1; i < agents; i++ {
		wantKeys = append(wantKeys, fmt.Sprintf("%s.r%d", base, i))
	}
	slices.Sort(wantKeys)
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("object keys %v, want %v", keys, wantKeys)
	}

	waitFor(t, "every result projected", func() bool { return projected(t, n, *cmd.ExecID).Ended == agents })
	rows, err := n.DB.R.Query(`SELECT pc_id, `+store.OutputTextSQL("stdout")+` FROM execution_results WHERE exec_id = ?`, *cmd.ExecID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var pc, stdout string
		if err := rows.Scan(&pc, &stdout); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(stdout, pc+": running ") || len(stdout) < 300<<10 || !strings.HasSuffix(stdout, "done\n") {
			t.Errorf("%s: row holds %d bytes starting %.40q", pc, len(stdout), stdout)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}
