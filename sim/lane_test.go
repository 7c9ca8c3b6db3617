package sim_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/natsauth"
	"github.com/kanade-go/kanade/node"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/sim"
	"github.com/kanade-go/kanade/wire"
)

// runLaneNode runs a whole node on the configuration `kanade nats-users`
// generates for pcs; it returns where it listens and every password.
func runLaneNode(t *testing.T, pcs []string, opts ...func(*node.Options)) (node.Ready, map[string]string) {
	t.Helper()
	l, err := natsauth.Fleet(pcs, "backend")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := natsauth.Render(l)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	pw := map[string]string{}
	for _, u := range l.Backend {
		pw[u.Name] = u.Password
	}
	for _, a := range l.Agents {
		pw[a.PC] = a.Password
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan node.Ready, 1)
	done := make(chan error, 1)
	o := node.Options{
		DataDir: filepath.Join(dir, "data"), HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:0",
		NATSSync: embedded.SyncInterval, NATSConfig: path, NodeName: "lanetest", Logger: nodetest.Logger(t),
	}
	for _, f := range opts {
		f(&o)
	}
	go func() { done <- node.Run(ctx, o, func(r node.Ready) { ready <- r }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	})
	select {
	case r := <-ready:
		return r, pw
	case err := <-done:
		t.Fatalf("node did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("node not ready in 60s")
	}
	return node.Ready{}, nil
}

// TestLaneOnPerPCCredentials: simulated agents, each on its own pc_id's
// credential under the generated configuration, do the whole lane (exec
// with a large output, results projected, live tail, kill, ping), while
// one agent's credential in an attacker's hands runs the recipes of issue
// 13 against the same node: nothing reaches another agent, and the
// projection counts no forged agent.
func TestLaneOnPerPCCredentials(t *testing.T) {
	pcs := []string{"sim-pc-0001", "sim-pc-0002", "sim-pc-0003", "sim-pc-0004"}
	// sim-pc-0005's credential is in the attacker's hands; its agent is
	// not running (within its own account, a credential holder can reach
	// its own agent: see the README).
	r, pw := runLaneNode(t, append(pcs, "sim-pc-0005"))
	ctx := context.Background()
	backend, err := nats.Connect(r.NATS, nats.UserInfo("backend", pw["backend"]))
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	f, err := sim.Start(ctx, sim.Options{
		Conn: backend, Agents: len(pcs), Groups: []string{"g1", "g2"}, Logger: nodetest.Logger(t),
		AgentConn: func(pc string) (*nats.Conn, error) {
			return nats.Connect(r.NATS, nats.UserInfo(pc, pw[pc]))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	aliveAgents := func() (alive []string) {
		var agents []struct {
			PCID  string `json:"pc_id"`
			Alive bool   `json:"alive"`
		}
		api(t, r.HTTP, "GET", "/api/agents", "", &agents)
		for _, a := range agents {
			if a.Alive {
				alive = append(alive, a.PCID)
			}
		}
		return alive
	}
	waitFor(t, "4 alive agents", func() bool { return len(aliveAgents()) == 4 })

	evil, err := nats.Connect(r.NATS, nats.UserInfo("sim-pc-0005", pw["sim-pc-0005"]))
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	ejs, _ := jetstream.New(evil)
	forged := `{"id":"evil","version":"1","request_id":"00000000-0000-4000-8000-0000000000e1","exec_id":null,` +
		`"shell":"sh","script":"# sim: outcome=success duration=10ms\nid","timeout_secs":5,"jitter_secs":null,"run_as":"system","staleness":{"mode":"cached"}}`
	meta := "$O." + wire.ObjectStoreOutput + ".M." + base64.URLEncoding.EncodeToString([]byte("EVIL1"))
	if _, err := ejs.Publish(ctx, meta, []byte(forged)); err != nil {
		t.Fatalf("attacker's meta: %v", err)
	}
	for _, reply := range []string{"commands.pc.sim-pc-0002", "commands.pc.sim-pc-0001", "commands.all", "commands.group.g2", "kill.x",
		"$KV.jobs.evil", "$KV.schedules.evil"} {
		evil.PublishRequest("$JS.API.DIRECT.GET.OBJ_result_output."+meta, reply, nil)
		evil.PublishRequest("$JS.API.DIRECT.GET.OBJ_result_output.$O.result_output.C.EVIL1", reply, nil)
		evil.PublishRequest(wire.Results("evil"), reply, []byte(`{}`))
	}
	// 200 fake agents through its own heartbeat subject, one in year 9999.
	for i := range 200 {
		b, _ := json.Marshal(wire.Heartbeat{PCID: fmt.Sprintf("fake-%03d", i), At: time.Now(), AgentVersion: "x"})
		evil.Publish(wire.HeartbeatSubject("sim-pc-0005"), b)
	}
	b, _ := json.Marshal(wire.Heartbeat{PCID: "sim-pc-0002", At: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), AgentVersion: "x"})
	evil.Publish(wire.HeartbeatSubject("sim-pc-0005"), b)
	evil.Flush()
	waitFor(t, "the fake heartbeats counted as mismatched", func() bool {
		var st struct {
			Heartbeats struct {
				Mismatched int `json:"mismatched"`
			} `json:"heartbeats"`
		}
		api(t, r.HTTP, "GET", "/api/projector/status", "", &st)
		return st.Heartbeats.Mismatched >= 201
	})
	if alive := aliveAgents(); len(alive) != 4 {
		t.Fatalf("alive agents %v, want the 4 real ones", alive)
	}

	// The lane: an exec on all with an output too large for a result.
	api(t, r.HTTP, "POST", "/api/jobs", `{"id":"big","version":"1.0.0","execute":{"shell":"sh","script":"# sim: outcome=success duration=100ms output=400KiB\nfind /","timeout":"30s"}}`, nil)
	api(t, r.HTTP, "POST", "/api/jobs", `{"id":"slow","version":"1.0.0","execute":{"shell":"sh","script":"# sim: outcome=success duration=1h output=4MiB\nsleep 3600","timeout":"2h"}}`, nil)
	var reply struct {
		ExecID      string `json:"exec_id"`
		TargetCount int    `json:"target_count"`
	}
	api(t, r.HTTP, "POST", "/api/exec/big", `{"target":{"all":true}}`, &reply)
	if reply.TargetCount != 4 {
		t.Fatalf("target_count %d, want 4 (fake heartbeats counted?)", reply.TargetCount)
	}
	var ex execution
	waitFor(t, "the exec to complete", func() bool {
		return api(t, r.HTTP, "GET", "/api/executions/"+reply.ExecID, "", &ex) == 200 && ex.Execution.Status == "completed"
	})
	if ex.Execution.SuccessCount != 4 || len(ex.Results) != 4 {
		t.Fatalf("execution %+v with %d results", ex.Execution, len(ex.Results))
	}
	var res struct {
		Stdout      string `json:"stdout"`
		StdoutBytes int    `json:"stdout_bytes"`
	}
	api(t, r.HTTP, "GET", "/api/results/"+ex.Results[0].ResultID, "", &res)
	if res.StdoutBytes < 400<<10 || !strings.HasPrefix(res.Stdout, ex.Results[0].PCID+": running big") {
		t.Fatalf("stdout of %d bytes read back from the object store: %.200q", res.StdoutBytes, res.Stdout)
	}
	// Every agent ran that one Command and nothing forged.
	if st := f.Stats(); st.Commands != 4 {
		t.Fatalf("the agents accepted %d Commands, want 4 (the exec's)", st.Commands)
	}

	// Live tail, then kill, on group g2.
	api(t, r.HTTP, "POST", "/api/exec/slow", `{"target":{"groups":["g2"]}}`, &reply)
	var resultID string
	waitFor(t, "a run of the slow exec", func() bool {
		if api(t, r.HTTP, "GET", "/api/executions/"+reply.ExecID, "", &ex) != 200 {
			return false
		}
		for _, res := range ex.Results {
			if res.FinishedAt == nil {
				resultID = res.ResultID
				return true
			}
		}
		return false
	})
	var tail tailReply
	waitFor(t, "live output", func() bool {
		api(t, r.HTTP, "GET", "/api/results/"+resultID+"/tail", "", &tail)
		return tail.Live && tail.Running && tail.Stdout != ""
	})
	api(t, r.HTTP, "POST", "/api/jobs/slow/kill", "", nil)
	waitFor(t, "the killed exec to complete", func() bool {
		api(t, r.HTTP, "GET", "/api/executions/"+reply.ExecID, "", &ex)
		return ex.Execution.Status == "completed"
	})
	for _, res := range ex.Results {
		if res.ExitCode == nil || *res.ExitCode != -1 {
			t.Errorf("%s: exit %v after kill, want -1", res.PCID, res.ExitCode)
		}
	}

	// Ping through the backend's account.
	m, err := backend.Request(wire.Ping("sim-pc-0003"), nil, 5*time.Second)
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	var hb wire.Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil || hb.PCID != "sim-pc-0003" {
		t.Fatalf("ping answer %s: %v", m.Data, err)
	}
	// Its log, likewise (logs.fetch.{pc_id}).
	if m, err := backend.Request(wire.LogsFetch("sim-pc-0003"), []byte(`{"tail_lines":5}`), 5*time.Second); err != nil || len(m.Data) == 0 {
		t.Fatalf("logs.fetch: %v", err)
	}
	if st := f.Stats(); st.Commands != 4+int64(len(f.Members("g2"))) {
		t.Fatalf("the agents accepted %d Commands, want %d", st.Commands, 4+len(f.Members("g2")))
	}
}

// TestPoisonAndImpersonationOnTheLane: recipes 3 and 4 sent on an agent's
// own credential to a node on the generated configuration. The three
// poison objects become a reject each and a result row with a note, the
// forged pc_ids are refused, and the lane goes on working for the others.
func TestPoisonAndImpersonationOnTheLane(t *testing.T) {
	r, pw := runLaneNode(t, []string{"sim-pc-0001", "sim-pc-0002", "sim-pc-0005"})
	ctx := context.Background()
	backend, err := nats.Connect(r.NATS, nats.UserInfo("backend", pw["backend"]))
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	// A Command published while the agent was away: it replays it on its
	// own credential (through its durable replay consumer on EXEC).
	bjs, _ := jetstream.New(backend)
	if _, err := bjs.Publish(ctx, wire.CommandsPC("sim-pc-0002"), []byte(`{"id":"missed","version":"1","request_id":"6d1f6d9e-0000-4000-8000-000000000001",`+
		`"exec_id":null,"shell":"sh","script":"# sim: outcome=success duration=10ms\nid","timeout_secs":5,"jitter_secs":null,"run_as":"system","staleness":{"mode":"cached"}}`)); err != nil {
		t.Fatal(err)
	}
	f, err := sim.Start(ctx, sim.Options{Conn: backend, Agents: 2, Logger: nodetest.Logger(t), Replay: true,
		AgentConn: func(pc string) (*nats.Conn, error) { return nats.Connect(r.NATS, nats.UserInfo(pc, pw[pc])) }})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	waitFor(t, "the missed Command replayed", func() bool { return f.Stats().ResultsPublished == 1 })
	evil, err := nats.Connect(r.NATS, nats.UserInfo("sim-pc-0005", pw["sim-pc-0005"]))
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	ejs, _ := jetstream.New(evil)
	putMeta := func(key string, info jetstream.ObjectInfo) {
		info.Name, info.Bucket = key, wire.ObjectStoreOutput
		b, _ := json.Marshal(info)
		subj := "$O." + wire.ObjectStoreOutput + ".M." + base64.URLEncoding.EncodeToString([]byte(key))
		if _, err := ejs.Publish(ctx, subj, b); err != nil {
			t.Fatal(err)
		}
	}
	putMeta("none/stdout", jetstream.ObjectInfo{NUID: "none1", Size: 1 << 20, Chunks: 8})
	putMeta("self/stdout", jetstream.ObjectInfo{NUID: "self1", ObjectMeta: jetstream.ObjectMeta{
		Opts: &jetstream.ObjectMetaOptions{Link: &jetstream.ObjectLink{Bucket: wire.ObjectStoreOutput, Name: "self/stdout"}}}})
	publish := func(subject string, v any) {
		b, _ := json.Marshal(v)
		if _, err := ejs.Publish(ctx, subject, b); err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
	}
	now := time.Now().UTC()
	for id, key := range map[string]string{"p-long": strings.Repeat("k", 3000), "p-none": "none/stdout", "p-self": "self/stdout"} {
		publish(wire.Results("req-"+id), wire.ExecResult{ResultID: id, RequestID: "req-" + id, PCID: "sim-pc-0005",
			ExitCode: 0, StdoutObject: &key, StartedAt: now, FinishedAt: now})
	}
	publish(wire.Started("ex-evil", "sim-pc-0005"), wire.EventStarted{ResultID: "p-started", RequestID: "q",
		ExecID: "ex-evil", PCID: "sim-pc-0002", StartedAt: now})

	// The lane goes on: an exec completes, and its result_ids stay theirs.
	api(t, r.HTTP, "POST", "/api/jobs", `{"id":"quick","version":"1.0.0","execute":{"shell":"sh","script":"# sim: outcome=success duration=50ms\nid","timeout":"30s"}}`, nil)
	var reply struct {
		ExecID string `json:"exec_id"`
	}
	waitFor(t, "2 alive agents", func() bool {
		var agents []struct {
			Alive bool `json:"alive"`
		}
		api(t, r.HTTP, "GET", "/api/agents", "", &agents)
		n := 0
		for _, a := range agents {
			if a.Alive {
				n++
			}
		}
		return n == 2
	})
	api(t, r.HTTP, "POST", "/api/exec/quick", `{"target":{"all":true}}`, &reply)
	var ex execution
	waitFor(t, "the exec to complete", func() bool {
		return api(t, r.HTTP, "GET", "/api/executions/"+reply.ExecID, "", &ex) == 200 && ex.Execution.Status == "completed"
	})
	// A leaked result_id sent again from the attacker's PC.
	victim := ex.Results[0]
	publish(wire.Results("req-x"), wire.ExecResult{ResultID: victim.ResultID, RequestID: "req-x", PCID: "sim-pc-0005",
		ExitCode: 1, Stdout: "forged", StartedAt: now, FinishedAt: now})

	for _, id := range []string{"p-long", "p-none", "p-self"} {
		var res struct {
			Stdout string `json:"stdout"`
		}
		waitFor(t, "poison result "+id, func() bool { return api(t, r.HTTP, "GET", "/api/results/"+id, "", &res) == 200 })
		if !strings.Contains(res.Stdout, "[kanade: output object result_output/") || !strings.Contains(res.Stdout, "not read") {
			t.Errorf("%s: stdout %q, want a note", id, res.Stdout)
		}
	}
	waitFor(t, "five rejects (three objects, the started event, the reused result_id)", func() bool {
		var st struct {
			Streams []struct {
				Stream  string `json:"stream"`
				Rejects int    `json:"rejects"`
			} `json:"streams"`
		}
		api(t, r.HTTP, "GET", "/api/projector/status", "", &st)
		n := 0
		for _, s := range st.Streams {
			n += s.Rejects
		}
		return n == 5
	})
	var again struct {
		PCID     string `json:"pc_id"`
		ExitCode *int64 `json:"exit_code"`
	}
	api(t, r.HTTP, "GET", "/api/results/"+victim.ResultID, "", &again)
	if again.PCID != victim.PCID || again.ExitCode == nil || *again.ExitCode != 0 {
		t.Fatalf("result %s now %+v, want %s's", victim.ResultID, again, victim.PCID)
	}
	if code := api(t, r.HTTP, "GET", "/api/results/p-started", "", nil); code != 404 {
		t.Fatalf("the started event with another pc_id made a row (%d)", code)
	}
}

// TestAgentsAloneReadTheirGates: a fleet with no backend connection at
// all, only the agents' own credentials, reads the script gates (KV
// script_status) it needs: a revoked job exits 126.
func TestAgentsAloneReadTheirGates(t *testing.T) {
	r, pw := runLaneNode(t, []string{"sim-pc-0001"})
	ctx := context.Background()
	f, err := sim.Start(ctx, sim.Options{Agents: 1, Logger: nodetest.Logger(t),
		AgentConn: func(pc string) (*nats.Conn, error) { return nats.Connect(r.NATS, nats.UserInfo(pc, pw[pc])) }})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	backend, err := nats.Connect(r.NATS, nats.UserInfo("backend", pw["backend"]))
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	bjs, _ := jetstream.New(backend)
	kv, err := bjs.KeyValue(ctx, wire.BucketScriptStatus)
	if err != nil {
		t.Fatal(err)
	}
	api(t, r.HTTP, "POST", "/api/jobs", `{"id":"gone","version":"1.0.0","execute":{"shell":"sh","script":"# sim: outcome=success duration=10ms\nid","timeout":"30s"}}`, nil)
	if _, err := kv.Put(ctx, "gone", []byte(wire.ScriptRevoked)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the agent alive", func() bool {
		var agents []struct {
			Alive bool `json:"alive"`
		}
		api(t, r.HTTP, "GET", "/api/agents", "", &agents)
		return len(agents) == 1 && agents[0].Alive
	})
	var reply struct {
		ExecID string `json:"exec_id"`
	}
	api(t, r.HTTP, "POST", "/api/exec/gone", `{"target":{"all":true}}`, &reply)
	var ex execution
	waitFor(t, "the exec to complete", func() bool {
		return api(t, r.HTTP, "GET", "/api/executions/"+reply.ExecID, "", &ex) == 200 && ex.Execution.Status == "completed"
	})
	if len(ex.Results) != 1 || ex.Results[0].ExitCode == nil || *ex.Results[0].ExitCode != wire.ExitRevoked {
		t.Fatalf("results %+v, want one exit %d", ex.Results, wire.ExitRevoked)
	}
}

// TestSignedCommandsAreTheSecondWall: what NATS leaves open, a credential
// holder reaching its own agent with a forged Command through a reply, is
// refused by an agent that verifies signatures, while the backend's signed
// Commands still run.
func TestSignedCommandsAreTheSecondWall(t *testing.T) {
	signer, _, err := signing.Generate("lane-1")
	if err != nil {
		t.Fatal(err)
	}
	ring, err := signing.NewKeyring([]signing.KeyringEntry{signer.KeyringEntry()})
	if err != nil {
		t.Fatal(err)
	}
	r, pw := runLaneNode(t, []string{"sim-pc-0001"}, func(o *node.Options) { o.Signer = signer })
	ctx := context.Background()
	f, err := sim.Start(ctx, sim.Options{Agents: 1, Keyring: ring, Logger: nodetest.Logger(t),
		AgentConn: func(pc string) (*nats.Conn, error) { return nats.Connect(r.NATS, nats.UserInfo(pc, pw[pc])) }})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	// The attacker holds the same PC's credential.
	evil, err := nats.Connect(r.NATS, nats.UserInfo("sim-pc-0001", pw["sim-pc-0001"]))
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	ejs, _ := jetstream.New(evil)
	forged := `{"id":"evil","version":"1","request_id":"00000000-0000-4000-8000-0000000000e2","exec_id":null,` +
		`"shell":"sh","script":"# sim: outcome=success duration=10ms\nid","timeout_secs":5,"jitter_secs":null,"run_as":"system","staleness":{"mode":"cached"}}`
	meta := "$O." + wire.ObjectStoreOutput + ".M." + base64.URLEncoding.EncodeToString([]byte("EVIL2"))
	if _, err := ejs.Publish(ctx, meta, []byte(forged)); err != nil {
		t.Fatal(err)
	}
	evil.PublishRequest("$JS.API.DIRECT.GET.OBJ_result_output."+meta, wire.CommandsPC("sim-pc-0001"), nil)
	evil.Flush()
	waitFor(t, "the forged Command refused", func() bool { return f.Stats().Refused == 1 })

	api(t, r.HTTP, "POST", "/api/jobs", `{"id":"ok","version":"1.0.0","execute":{"shell":"sh","script":"# sim: outcome=success duration=10ms\nid","timeout":"30s"}}`, nil)
	waitFor(t, "the agent alive", func() bool {
		var agents []struct {
			Alive bool `json:"alive"`
		}
		api(t, r.HTTP, "GET", "/api/agents", "", &agents)
		return len(agents) == 1 && agents[0].Alive
	})
	var reply struct {
		ExecID string `json:"exec_id"`
	}
	api(t, r.HTTP, "POST", "/api/exec/ok", `{"target":{"all":true}}`, &reply)
	var ex execution
	waitFor(t, "the signed exec to complete", func() bool {
		return api(t, r.HTTP, "GET", "/api/executions/"+reply.ExecID, "", &ex) == 200 && ex.Execution.Status == "completed"
	})
	if ex.Execution.SuccessCount != 1 || f.Stats().Commands != 1 || f.Stats().Refused != 1 {
		t.Fatalf("execution %+v, agent %v", ex.Execution, f.Stats())
	}
}

// TestReplayOnPerPCCredentials: simulated agents on their own credentials
// replay what they missed as upstream agents do, through their durable
// replay consumers (agent_replay_{pc}): their own Commands, the broadcast
// and their group's, not another group's; a restarted fleet replays only
// what it has not acked before.
func TestReplayOnPerPCCredentials(t *testing.T) {
	r, pw := runLaneNode(t, []string{"sim-pc-0001", "sim-pc-0002"})
	ctx := context.Background()
	backend, err := nats.Connect(r.NATS, nats.UserInfo("backend", pw["backend"]))
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	bjs, _ := jetstream.New(backend)
	n := 0
	publish := func(subject string) {
		t.Helper()
		n++
		cmd := fmt.Sprintf(`{"id":"missed","version":"1","request_id":"6d1f6d9e-0000-4000-8000-%012d","exec_id":null,"shell":"sh",`+
			`"script":"# sim: outcome=success duration=10ms\nid","timeout_secs":5,"jitter_secs":null,"run_as":"system","staleness":{"mode":"cached"}}`, n)
		if _, err := bjs.Publish(ctx, subject, []byte(cmd)); err != nil {
			t.Fatal(err)
		}
	}
	start := func() *sim.Fleet {
		t.Helper()
		f, err := sim.Start(ctx, sim.Options{Conn: backend, Agents: 2, Groups: []string{"g1", "g2"}, Logger: nodetest.Logger(t), Replay: true,
			AgentConn: func(pc string) (*nats.Conn, error) { return nats.Connect(r.NATS, nats.UserInfo(pc, pw[pc])) }})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	// Missed while no agent ran: sim-pc-0001 (group g1) should run its
	// own, the broadcast and g1's; sim-pc-0002 (group g2) the broadcast
	// and g2's: 5 in all.
	publish(wire.CommandsPC("sim-pc-0001"))
	publish(wire.SubjectCommandsAll)
	publish(wire.CommandsGroup("g1"))
	publish(wire.CommandsGroup("g2"))
	f := start()
	waitFor(t, "the missed Commands replayed", func() bool { return f.Stats().ResultsPublished == 5 })
	if st := f.Stats(); st.Commands != 5 {
		t.Fatalf("%d Commands accepted, want 5", st.Commands)
	}
	f.Stop()
	// Restarted: nothing again; then one more missed, for sim-pc-0002.
	publish(wire.CommandsPC("sim-pc-0002"))
	f = start()
	defer f.Stop()
	waitFor(t, "the new missed Command replayed", func() bool { return f.Stats().ResultsPublished == 1 })
	if st := f.Stats(); st.Commands != 1 {
		t.Fatalf("after a restart %d Commands accepted, want 1 (the new one)", st.Commands)
	}
	// The consumers in the backend account are the agents' pull consumers.
	exec, _ := bjs.Stream(ctx, wire.StreamExec)
	for _, pc := range []string{"sim-pc-0001", "sim-pc-0002"} {
		c, err := exec.Consumer(ctx, natsauth.ReplayConsumer(pc))
		if err != nil {
			t.Fatalf("%s: %v", pc, err)
		}
		if cfg := c.CachedInfo().Config; cfg.DeliverSubject != "" || len(cfg.FilterSubjects) != 3 {
			t.Fatalf("%s's consumer %+v", pc, cfg)
		}
	}
}

// TestGroupsFollowKVOnPerPCCredentials: agents with no backend connection
// follow their own agent_groups key and agent_config through watches on
// their own credentials (the backend's relay keeps each to its own keys):
// a group set in KV after start brings that group's Commands.
func TestGroupsFollowKVOnPerPCCredentials(t *testing.T) {
	r, pw := runLaneNode(t, []string{"sim-pc-0001", "sim-pc-0002"})
	ctx := context.Background()
	backend, err := nats.Connect(r.NATS, nats.UserInfo("backend", pw["backend"]))
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	bjs, _ := jetstream.New(backend)
	f, err := sim.Start(ctx, sim.Options{Agents: 2, Groups: []string{"g1"}, Logger: nodetest.Logger(t),
		AgentConn: func(pc string) (*nats.Conn, error) { return nats.Connect(r.NATS, nats.UserInfo(pc, pw[pc])) }})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	kv, err := bjs.KeyValue(ctx, wire.BucketAgentGroups)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "sim-pc-0002", []byte(`{"groups":["g9"]}`)); err != nil {
		t.Fatal(err)
	}
	cmd := `{"id":"grp","version":"1","request_id":"6d1f6d9e-0000-4000-8000-0000000000a%d","exec_id":null,"shell":"sh",` +
		`"script":"# sim: outcome=success duration=10ms\nid","timeout_secs":5,"jitter_secs":null,"run_as":"system","staleness":{"mode":"cached"}}`
	// The membership change reaches the agent asynchronously: publish
	// until it runs one (each Command its own request_id).
	i := 0
	waitFor(t, "sim-pc-0002 to run g9's Command", func() bool {
		i++
		backend.Publish(wire.CommandsGroup("g9"), []byte(fmt.Sprintf(cmd, i)))
		backend.Flush()
		time.Sleep(100 * time.Millisecond)
		return f.Stats().ResultsPublished >= 1
	})
	// Only sim-pc-0002 is in g9 (sim-pc-0001 kept g1): one more Command
	// is run by it alone.
	time.Sleep(500 * time.Millisecond) // the loop's last runs finish
	results, _ := backend.SubscribeSync("results.>")
	backend.Flush()
	before := f.Stats().ResultsPublished
	backend.Publish(wire.CommandsGroup("g9"), []byte(fmt.Sprintf(cmd, 0)))
	m, err := results.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var res wire.ExecResult
	if err := json.Unmarshal(m.Data, &res); err != nil || res.PCID != "sim-pc-0002" {
		t.Fatalf("g9's Command ran on %q: %v", res.PCID, err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := f.Stats().ResultsPublished - before; n != 1 {
		t.Fatalf("%d results for one Command to one agent", n)
	}
}
