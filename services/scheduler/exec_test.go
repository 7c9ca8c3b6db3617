package scheduler

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// addAgent records a heartbeat as the projector would.
func addAgent(t *testing.T, n *nodetest.Node, pc string, at time.Time) {
	t.Helper()
	if _, err := n.DB.W.Exec(`INSERT INTO agents (pc_id, last_heartbeat) VALUES (?, ?)`, pc, store.FormatTime(at)); err != nil {
		t.Fatal(err)
	}
}

// executionRecords reads every record in the EXECUTIONS stream.
func executionRecords(t *testing.T, js jetstream.JetStream) []streams.ExecutionRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, streams.StreamExecutions)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []streams.ExecutionRecord
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var r streams.ExecutionRecord
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("record %d: %v", seq, err)
		}
		out = append(out, r)
	}
	return out
}

func TestExecNow(t *testing.T) {
	n := nodetest.Start(t)
	startScheduler(t, n, "a", nil)
	nc := n.Conn(t)
	js := n.JetStream(t)
	mustCall(t, nc, "kanade.jobs.put", "", `{"id":"inv","version":"3.1.0","execute":{"shell":"pwsh","script":"hostname","timeout":"90s","cwd":"C:\\Temp"}}`)

	now := time.Now()
	addAgent(t, n, "PC1", now)
	addAgent(t, n, "PC2", now.Add(-time.Minute))
	addAgent(t, n, "PC3", now)
	addAgent(t, n, "OLD", now.Add(-time.Hour)) // not alive
	groups, err := js.KeyValue(context.Background(), wire.BucketAgentGroups)
	if err != nil {
		t.Fatal(err)
	}
	groups.Put(context.Background(), "PC1", []byte(`{"groups":["desk","lab"]}`))
	groups.Put(context.Background(), "PC2", []byte(`["lab"]`)) // the bare list this project once wrote
	groups.Put(context.Background(), "OLD", []byte(`{"groups":["desk"]}`))
	time.Sleep(100 * time.Millisecond) // the group watcher catches up

	cmds := subscribeCommands(t, nc, "commands.>")

	// all: the alive agents.
	var rep ExecReply
	json.Unmarshal([]byte(mustCall(t, nc, "kanade.jobs.exec", "", `{"job_id":"inv","target":{"all":true},"jitter":"5m"}`)), &rep)
	if rep.JobID != "inv" || rep.Version != "3.1.0" || rep.TargetCount != 3 || strings.Join(rep.Subjects, ",") != "commands.all" || rep.ExecID == "" {
		t.Errorf("exec all: %+v", rep)
	}
	c, msg := cmds.next(t)
	if msg.Subject != "commands.all" || *c.ExecID != rep.ExecID || c.ID != "inv" || c.Shell != "pwsh" ||
		c.Script != "hostname" || c.TimeoutSecs != 90 || c.JitterSecs == nil || *c.JitterSecs != 300 ||
		c.RunAs != "system" || c.Staleness.Mode != "cached" || c.Cwd != `C:\Temp` || c.DeadlineAt != nil {
		t.Errorf("command %s", msg.Data)
	}

	// groups and pcs together: one Command, one request_id, on every subject.
	json.Unmarshal([]byte(mustCall(t, nc, "kanade.jobs.exec", "", `{"job_id":"inv","target":{"groups":["desk","lab"],"pcs":["PC9"]}}`)), &rep)
	if rep.TargetCount != 3 { // PC1, PC2 alive in the groups, plus PC9 named
		t.Errorf("exec groups+pcs target_count %d, want 3", rep.TargetCount)
	}
	want := []string{"commands.group.desk", "commands.group.lab", "commands.pc.PC9"}
	var got []string
	var reqIDs = map[string]bool{}
	for range want {
		c, msg := cmds.next(t)
		got = append(got, msg.Subject)
		reqIDs[c.RequestID] = true
		if *c.ExecID != rep.ExecID || c.JitterSecs != nil {
			t.Errorf("command %s", msg.Data)
		}
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") || len(reqIDs) != 1 {
		t.Errorf("subjects %v (request ids %v), want %v and one request id", got, reqIDs, want)
	}
	cmds.none(t, nc)

	json.Unmarshal([]byte(mustCall(t, nc, "kanade.jobs.exec", "", `{"job_id":"inv","target":{"pcs":["X1","X2","X1"]}}`)), &rep)
	if rep.TargetCount != 2 {
		t.Errorf("exec pcs target_count %d, want 2", rep.TargetCount)
	}
	for range 2 { // pc.X1, pc.X2
		cmds.next(t)
	}

	// EXEC keeps the Command for agents that are offline.
	ctx := context.Background()
	exec, err := js.Stream(ctx, wire.StreamExec)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := exec.GetLastMsgForSubject(ctx, "commands.pc.PC9"); err != nil || !strings.Contains(string(m.Data), `"request_id"`) {
		t.Errorf("EXEC has no Command for commands.pc.PC9: %v", err)
	}

	recs := executionRecords(t, js)
	if len(recs) != 3 {
		t.Fatalf("%d execution records, want 3", len(recs))
	}
	r := recs[0]
	// A NATS caller that names no actor (the gateway names the user).
	if r.InitiatedBy != "nats" || r.JobID != "inv" || r.Version != "3.1.0" || r.TargetCount != 3 ||
		string(r.Target) != `{"all":true}` || r.TimeoutSecs != 90 || r.RequestID == "" || time.Since(r.InitiatedAt) > time.Minute {
		t.Errorf("record %+v", r)
	}

	bad := map[string]struct {
		code int
		msg  string
	}{
		`{"job_id":"inv"}`:                                    {400, "empty target"},
		`{"job_id":"inv","target":{}}`:                        {400, "empty target"},
		`{"job_id":"inv","target":{"all":false}}`:             {400, "empty target"},
		`{"job_id":"inv","target":{"groups":["a b"]}}`:        {400, "invalid target group"},
		`{"job_id":"inv","target":{"pcs":["*"]}}`:             {400, "invalid target pc"},
		`{"job_id":"inv","target":{"all":true,"pcs":["a"]}}`:  {400, "cannot be combined"},
		`{"job_id":"inv","target":{"all":true},"jitter":"x"}`: {400, "invalid jitter"},
		`{"job_id":"nope","target":{"all":true}}`:             {404, "not found"},
		`{"job_id":"inv","target":"all"}`:                     {400, "target"},
		// A group nobody is in (a typo) would never complete.
		`{"job_id":"inv","target":{"groups":["nobody","lab"]}}`: {400, `target resolves to no PC: group "nobody" has no members`},
	}
	for body, w := range bad {
		code, msg := call(t, nc, "kanade.jobs.exec", "", body)
		if code != w.code || !strings.Contains(msg, w.msg) {
			t.Errorf("exec %s: %d %q, want %d containing %q", body, code, msg, w.code, w.msg)
		}
	}
	cmds.none(t, nc)
}
