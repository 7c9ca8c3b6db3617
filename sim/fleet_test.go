package sim_test

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/sim"
	"github.com/kanade-go/kanade/wire"
)

// httpReply is a raw HTTP answer.
type httpReply struct {
	status int
	header http.Header
	body   string
}

func httpCall(t *testing.T, base, method, path, body string) httpReply {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpReply{resp.StatusCode, resp.Header, string(b)}
}

func (r httpReply) decode(t *testing.T, out any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), out); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

// Fleet management through the HTTP API against simulated agents: ping,
// membership edited through the API reaching the agents, the roster's 400
// on an empty group, layered config resolved and applied, the agent's log,
// and the list's paging headers.
func TestFleetThroughTheAPI(t *testing.T) {
	r := runNode(t, embedded.SyncInterval)
	nc, err := nats.Connect(r.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	f, err := sim.Start(context.Background(), sim.Options{Conn: nc, Agents: 3, Prefix: "fl-", Groups: []string{"office"}, Logger: nodetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	u := r.HTTP

	waitFor(t, "3 agents listed with paging headers", func() bool {
		rep := httpCall(t, u, "GET", "/api/agents?limit=2&sort=pc_id&q=^fl-", "")
		return rep.status == 200 && rep.header.Get("X-Total-Count") == "3" && rep.header.Get("X-Online-Count") == "3"
	})
	t.Run("list pages and filters", func(t *testing.T) {
		rep := httpCall(t, u, "GET", "/api/agents?limit=2&offset=1&sort=pc_id&dir=desc", "")
		var rows []map[string]any
		rep.decode(t, &rows)
		if len(rows) != 2 || rows[0]["pc_id"] != "fl-0002" || rows[1]["pc_id"] != "fl-0001" ||
			rep.header.Get("X-Total-Count") != "3" || rep.header.Get("X-Offline-Count") != "0" {
			t.Errorf("page: %v %s", rep.header, rep.body)
		}
		rep = httpCall(t, u, "GET", "/api/agents?status=offline&limit=10", "")
		if rep.body != "[]" || rep.header.Get("X-Total-Count") != "0" || rep.header.Get("X-Online-Count") != "3" {
			t.Errorf("offline: %v %s", rep.header, rep.body)
		}
		if rep := httpCall(t, u, "GET", "/api/agents?status=gone", ""); rep.status != 400 || rep.body != "status must be 'online' or 'offline'" {
			t.Errorf("bad status: %d %s", rep.status, rep.body)
		}
		if rep := httpCall(t, u, "GET", "/api/agents?q=(", ""); rep.status != 400 || !strings.HasPrefix(rep.body, "invalid regex `(`") {
			t.Errorf("bad regex: %d %s", rep.status, rep.body)
		}
	})

	t.Run("ping", func(t *testing.T) {
		before := time.Now().Add(-time.Second)
		rep := httpCall(t, u, "POST", "/api/agents/fl-0001/ping", "")
		var p struct {
			Heartbeat struct {
				PCID string    `json:"pc_id"`
				At   time.Time `json:"at"`
			} `json:"heartbeat"`
		}
		rep.decode(t, &p)
		if rep.status != 200 || p.Heartbeat.PCID != "fl-0001" || p.Heartbeat.At.Before(before) {
			t.Errorf("ping: %d %s", rep.status, rep.body)
		}
		// A PC the fleet does not answer for is silent (the fleet listens
		// on agents.*.ping): 408 once wait_secs passed.
		start := time.Now()
		rep = httpCall(t, u, "POST", "/api/agents/silent-pc/ping?wait_secs=1", "")
		if took := time.Since(start); rep.status != 408 || rep.body != "no ping reply from silent-pc within 1s" || took < time.Second || took > 4*time.Second {
			t.Errorf("silent ping: %d %q after %v", rep.status, rep.body, took)
		}
	})

	if rep := httpCall(t, u, "POST", "/api/jobs", `{"id":"hello","version":"1.0.0","execute":{"shell":"sh","script":"# sim: outcome=success duration=10ms\necho hi","timeout":"30s"}}`); rep.status != 200 {
		t.Fatalf("job: %d %s", rep.status, rep.body)
	}
	t.Run("a PC put in a group through the API gets the group's next exec", func(t *testing.T) {
		rep := httpCall(t, u, "POST", "/api/exec/hello", `{"target":{"groups":["lab"]}}`)
		if rep.status != 400 || rep.body != `target resolves to no PC: group "lab" has no members` {
			t.Fatalf("exec on an empty group: %d %q", rep.status, rep.body)
		}
		rep = httpCall(t, u, "POST", "/api/agents/fl-0002/groups", `{"group":"lab"}`)
		if rep.status != 200 || rep.body != `{"groups":["lab","office"]}` {
			t.Fatalf("add group: %d %s", rep.status, rep.body)
		}
		waitFor(t, "the agent to follow its groups", func() bool { return slices.Contains(f.Groups("fl-0002"), "lab") })
		var ex struct {
			ExecID      string `json:"exec_id"`
			TargetCount int    `json:"target_count"`
		}
		rep = httpCall(t, u, "POST", "/api/exec/hello", `{"target":{"groups":["lab"]}}`)
		rep.decode(t, &ex)
		if rep.status != 200 || ex.TargetCount != 1 {
			t.Fatalf("exec on lab: %d %s", rep.status, rep.body)
		}
		var detail execution
		waitFor(t, "the lab exec to complete", func() bool {
			rep := httpCall(t, u, "GET", "/api/executions/"+ex.ExecID, "")
			return rep.status == 200 && json.Unmarshal([]byte(rep.body), &detail) == nil && detail.Execution.Status == "completed"
		})
		if len(detail.Results) != 1 || detail.Results[0].PCID != "fl-0002" {
			t.Fatalf("lab exec results %+v", detail.Results)
		}
		var ov struct {
			Groups []struct {
				Name    string   `json:"name"`
				Members []string `json:"members"`
			} `json:"groups"`
		}
		httpCall(t, u, "GET", "/api/groups", "").decode(t, &ov)
		var lab []string
		for _, g := range ov.Groups {
			if g.Name == "lab" {
				lab = g.Members
			}
		}
		if !slices.Equal(lab, []string{"fl-0002"}) {
			t.Errorf("groups overview: %+v", ov)
		}
	})

	t.Run("a dynamic group reaches the agents it selects", func(t *testing.T) {
		def := `{"id":"fleet-linux","query":"SELECT pc_id FROM agents WHERE os_family = 'linux' AND pc_id LIKE 'fl-%'"}`
		if rep := httpCall(t, u, "POST", "/api/group-defs", def); rep.status != 200 || !strings.Contains(rep.body, `"kind":"dynamic"`) {
			t.Fatalf("group def: %d %s", rep.status, rep.body)
		}
		waitFor(t, "the agents to join the derived group", func() bool {
			for _, pc := range f.PCIDs() {
				if !slices.Contains(f.Groups(pc), "fleet-linux") {
					return false
				}
			}
			return true
		})
		var ex struct {
			ExecID      string `json:"exec_id"`
			TargetCount int    `json:"target_count"`
		}
		rep := httpCall(t, u, "POST", "/api/exec/hello", `{"target":{"groups":["fleet-linux"]}}`)
		rep.decode(t, &ex)
		if rep.status != 200 || ex.TargetCount != 3 {
			t.Fatalf("exec on the dynamic group: %d %s", rep.status, rep.body)
		}
		var detail execution
		waitFor(t, "the dynamic group's exec to complete", func() bool {
			rep := httpCall(t, u, "GET", "/api/executions/"+ex.ExecID, "")
			return rep.status == 200 && json.Unmarshal([]byte(rep.body), &detail) == nil && detail.Execution.Status == "completed"
		})
		if len(detail.Results) != 3 {
			t.Fatalf("results %+v", detail.Results)
		}
		// The manual membership is untouched: GET shows what was set by hand.
		if rep := httpCall(t, u, "GET", "/api/agents/fl-0001/groups", ""); rep.body != `{"groups":["office"]}` {
			t.Errorf("manual groups of fl-0001: %s", rep.body)
		}
	})

	t.Run("effective config merges global < group < pc", func(t *testing.T) {
		for path, body := range map[string]string{
			"/api/config":               `{"heartbeat_interval":"20s","max_local_concurrent":4,"client_display_name":"Fleet"}`,
			"/api/groups/lab/config":    `{"heartbeat_interval":"15s","client_display_name":"Lab"}`,
			"/api/pcs/fl-0002/config":   `{"heartbeat_interval":"5s"}`,
			"/api/groups/office/config": `{"target_version":"0.45.0"}`,
		} {
			if rep := httpCall(t, u, "PUT", path, body); rep.status != 200 || rep.body != body {
				t.Fatalf("PUT %s: %d %s", path, rep.status, rep.body)
			}
		}
		var ec struct {
			Effective struct {
				HeartbeatInterval  string  `json:"heartbeat_interval"`
				MaxLocalConcurrent *int    `json:"max_local_concurrent"`
				ClientDisplayName  *string `json:"client_display_name"`
				TargetVersion      *string `json:"target_version"`
				HostPerfInterval   string  `json:"host_perf_interval"`
			} `json:"effective"`
			MyGroups []string `json:"my_groups"`
		}
		httpCall(t, u, "GET", "/api/agents/fl-0002/effective_config", "").decode(t, &ec)
		e := ec.Effective
		if e.HeartbeatInterval != "5s" || e.MaxLocalConcurrent == nil || *e.MaxLocalConcurrent != 4 ||
			e.ClientDisplayName == nil || *e.ClientDisplayName != "Lab" || e.TargetVersion == nil || *e.TargetVersion != "0.45.0" ||
			e.HostPerfInterval != "60s" || !slices.Equal(ec.MyGroups, []string{"lab", "office"}) {
			t.Errorf("fl-0002 effective %+v", ec)
		}
		httpCall(t, u, "GET", "/api/agents/fl-0001/effective_config", "").decode(t, &ec)
		if ec.Effective.HeartbeatInterval != "20s" || *ec.Effective.ClientDisplayName != "Fleet" {
			t.Errorf("fl-0001 effective %+v", ec)
		}
		// Inherited for the PC leaves its own scope out.
		var inh struct {
			HeartbeatInterval string `json:"heartbeat_interval"`
		}
		httpCall(t, u, "GET", "/api/pcs/fl-0002/config/inherited", "").decode(t, &inh)
		if inh.HeartbeatInterval != "15s" {
			t.Errorf("inherited %+v", inh)
		}
		// The agents apply the same resolution.
		waitFor(t, "the agents to apply their config", func() bool {
			return f.Config("fl-0002").HeartbeatInterval == "5s" && f.Config("fl-0001").HeartbeatInterval == "20s"
		})
	})

	t.Run("logs", func(t *testing.T) {
		rep := httpCall(t, u, "GET", "/api/agents/fl-0002/logs?tail=200", "")
		if rep.status != 200 || !strings.HasPrefix(rep.header.Get("Content-Type"), "text/plain") ||
			!strings.Contains(rep.body, "command hello 1.0.0") || !strings.Contains(rep.body, "ping") && !strings.Contains(rep.body, "groups now [lab, office]") {
			t.Errorf("logs: %d %v\n%s", rep.status, rep.header, rep.body)
		}
		want := strings.Join(f.Log("fl-0002")[len(f.Log("fl-0002"))-2:], "\n") + "\n"
		if rep := httpCall(t, u, "GET", "/api/agents/fl-0002/logs?tail=2", ""); rep.body != want {
			t.Errorf("tail=2: %q, want %q", rep.body, want)
		}
	})

	t.Run("forget", func(t *testing.T) {
		if rep := httpCall(t, u, "DELETE", "/api/agents/fl-0003", ""); rep.status != 204 {
			t.Fatalf("delete: %d %s", rep.status, rep.body)
		}
		if rep := httpCall(t, u, "GET", "/api/agents/fl-0003", ""); rep.status != 404 || rep.body != "" {
			t.Errorf("detail after delete: %d %q", rep.status, rep.body)
		}
		if rep := httpCall(t, u, "DELETE", "/api/agents/fl-0003", ""); rep.status != 204 {
			t.Errorf("delete again: %d %s", rep.status, rep.body)
		}
	})
}

// Agents follow their groups from KV in both subscription modes, and run
// at most max_local_concurrent Commands at once, as their layered config says.
func TestFleetFollowsGroupsAndConfig(t *testing.T) {
	for _, mode := range []sim.Subscriptions{sim.Shared, sim.PerAgent} {
		t.Run(string(mode), func(t *testing.T) {
			n := nodetest.Start(t)
			f := startFleet(t, n, sim.Options{Agents: 2, Groups: []string{"g1"}, Subscriptions: mode})
			js := n.JetStream(t)
			ctx := context.Background()
			groups, _ := js.KeyValue(ctx, wire.BucketAgentGroups)
			derived, _ := js.KeyValue(ctx, wire.BucketAgentGroupsDerived)
			config, _ := js.KeyValue(ctx, wire.BucketAgentConfig)

			// Moved from g1 to g2 by hand, and in "win" by a definition.
			groups.Put(ctx, "sim-pc-0001", []byte(`{"groups":["g2"]}`))
			derived.Put(ctx, "sim-pc-0001", []byte(`{"groups":["win"]}`))
			waitFor(t, "the agent to follow", func() bool { return slices.Equal(f.Groups("sim-pc-0001"), []string{"g2", "win"}) })
			cmd := command("# sim: outcome=success duration=10ms", true)
			publish(t, js, cmd, wire.CommandsGroup("g1"), wire.CommandsGroup("win"))
			waitIdle(t, f, 2)
			if got := slices.Sorted(maps.Keys(results(t, js, cmd.RequestID))); !slices.Equal(got, []string{"sim-pc-0001", "sim-pc-0002"}) {
				t.Fatalf("results from %v", got)
			}
			// Left g1: its next Command does not reach the agent.
			cmd2 := command("# sim: outcome=success duration=10ms", true)
			publish(t, js, cmd2, wire.CommandsGroup("g1"))
			waitIdle(t, f, 3)
			if got := slices.Sorted(maps.Keys(results(t, js, cmd2.RequestID))); !slices.Equal(got, []string{"sim-pc-0002"}) {
				t.Fatalf("g1 results from %v", got)
			}

			// One run at a time on sim-pc-0002.
			config.Put(ctx, "pcs.sim-pc-0002", []byte(`{"max_local_concurrent":1}`))
			waitFor(t, "the config applied", func() bool {
				m := f.Config("sim-pc-0002").MaxLocalConcurrent
				return m != nil && *m == 1
			})
			a, b := command("# sim: outcome=success duration=300ms", false), command("# sim: outcome=success duration=300ms", false)
			publish(t, js, a, wire.CommandsPC("sim-pc-0002"))
			publish(t, js, b, wire.CommandsPC("sim-pc-0002"))
			waitIdle(t, f, 5)
			ra, rb := results(t, js, a.RequestID)["sim-pc-0002"], results(t, js, b.RequestID)["sim-pc-0002"]
			first, second := ra, rb
			if rb.StartedAt.Before(ra.StartedAt) {
				first, second = rb, ra
			}
			if second.StartedAt.Before(first.FinishedAt) {
				t.Errorf("two runs at once under max_local_concurrent 1: %v-%v and %v-%v",
					first.StartedAt, first.FinishedAt, second.StartedAt, second.FinishedAt)
			}
		})
	}
}
