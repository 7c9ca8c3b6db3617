package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/node"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/sim"
)

// runNode runs a whole node in-process, as `kanade serve` does, and
// returns where it listens; it stops at the end of the test.
func runNode(t testing.TB, sync embedded.Sync) node.Ready {
	t.Helper()
	dir := t.TempDir() // before the cleanup below, so removed after the node stops
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan node.Ready, 1)
	done := make(chan error, 1)
	go func() {
		done <- node.Run(ctx, node.Options{
			DataDir: dir, HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:0", NATSSync: sync,
			NodeName: "simtest", Logger: nodetest.Logger(t),
		}, func(r node.Ready) { ready <- r })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	})
	select {
	case r := <-ready:
		return r
	case err := <-done:
		t.Fatalf("node did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("node not ready in 60s")
	}
	return node.Ready{}
}

// api calls the HTTP API and decodes a JSON answer into out (if not nil).
// A 404 is returned (what is asked for may not be projected yet); any other
// error status fails the test.
func api(t *testing.T, base, method, path, body string, out any) int {
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
	if resp.StatusCode == http.StatusNotFound {
		return resp.StatusCode
	}
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil && len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

type execution struct {
	Execution struct {
		ExecID       string `json:"exec_id"`
		TargetCount  int    `json:"target_count"`
		SuccessCount int    `json:"success_count"`
		FailureCount int    `json:"failure_count"`
		Status       string `json:"status"`
	} `json:"execution"`
	Results []struct {
		ResultID   string  `json:"result_id"`
		PCID       string  `json:"pc_id"`
		ExitCode   *int64  `json:"exit_code"`
		FinishedAt *string `json:"finished_at"`
	} `json:"results"`
}

type tailReply struct {
	Running  bool   `json:"running"`
	Live     bool   `json:"live"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	ExitCode *int64 `json:"exit_code"`
}

// The whole path: simulated agents against a full node, driven through the
// HTTP API as the dashboard does.
func TestEndToEndThroughTheAPI(t *testing.T) {
	r := runNode(t, embedded.SyncInterval)
	nc, err := nats.Connect(r.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	f, err := sim.Start(context.Background(), sim.Options{Conn: nc, Agents: 6, Groups: []string{"g1", "g2"}, Logger: nodetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()

	// Exec counts alive agents: wait until the heartbeats are projected.
	waitFor(t, "6 alive agents", func() bool {
		var agents []struct {
			PCID  string `json:"pc_id"`
			Alive bool   `json:"alive"`
		}
		api(t, r.HTTP, "GET", "/api/agents", "", &agents)
		alive := 0
		for _, a := range agents {
			if a.Alive && strings.HasPrefix(a.PCID, "sim-pc-") {
				alive++
			}
		}
		return alive == 6
	})

	api(t, r.HTTP, "POST", "/api/jobs", `{"id":"quick","version":"1.0.0","execute":{"shell":"sh","script":"# sim: outcome=success duration=100ms\nuname -a","timeout":"30s"}}`, nil)
	api(t, r.HTTP, "POST", "/api/jobs", `{"id":"slow","version":"1.0.0","execute":{"shell":"sh","script":"# sim: outcome=success duration=1h output=4MiB\nsleep 3600","timeout":"2h"}}`, nil)

	// An exec on a group: exactly one result per member, counters complete.
	var reply struct {
		ExecID      string `json:"exec_id"`
		TargetCount int    `json:"target_count"`
	}
	api(t, r.HTTP, "POST", "/api/exec/quick", `{"target":{"groups":["g1"]}}`, &reply)
	members := f.Members("g1")
	if reply.TargetCount != len(members) {
		t.Fatalf("target_count %d, want %d (%v)", reply.TargetCount, len(members), members)
	}
	var ex execution
	waitFor(t, "the group exec to complete", func() bool {
		return api(t, r.HTTP, "GET", "/api/executions/"+reply.ExecID, "", &ex) == 200 && ex.Execution.Status == "completed"
	})
	var pcs []string
	for _, res := range ex.Results {
		pcs = append(pcs, res.PCID)
		if res.ExitCode == nil || *res.ExitCode != 0 {
			t.Errorf("%s: exit %v", res.PCID, res.ExitCode)
		}
	}
	slices.Sort(pcs)
	if !slices.Equal(pcs, members) || ex.Execution.SuccessCount != len(members) || ex.Execution.FailureCount != 0 {
		t.Fatalf("execution %+v from %v, want one success from each of %v", ex.Execution, pcs, members)
	}

	// A slow exec on the other group: live tail while it runs, then a kill.
	api(t, r.HTTP, "POST", "/api/exec/slow", `{"target":{"groups":["g2"]}}`, &reply)
	var resultID string
	waitFor(t, "a run of the slow exec to be seen running", func() bool {
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
	var first, later tailReply
	waitFor(t, "live output", func() bool {
		api(t, r.HTTP, "GET", "/api/results/"+resultID+"/tail", "", &first)
		return first.Live && first.Stdout != ""
	})
	waitFor(t, "the live output to grow", func() bool {
		api(t, r.HTTP, "GET", "/api/results/"+resultID+"/tail", "", &later)
		return len(later.Stdout) > len(first.Stdout)
	})
	if !first.Running || !later.Running || !later.Live || later.ExitCode != nil {
		t.Fatalf("tails %+v then %+v", first, later)
	}

	api(t, r.HTTP, "POST", "/api/jobs/slow/kill", "", nil)
	waitFor(t, "the killed exec to complete", func() bool {
		api(t, r.HTTP, "GET", "/api/executions/"+reply.ExecID, "", &ex)
		return ex.Execution.Status == "completed"
	})
	if ex.Execution.TargetCount != len(f.Members("g2")) || ex.Execution.FailureCount != ex.Execution.TargetCount || len(ex.Results) != ex.Execution.TargetCount {
		t.Fatalf("killed execution %+v with %d results", ex.Execution, len(ex.Results))
	}
	for _, res := range ex.Results {
		if res.ExitCode == nil || *res.ExitCode != -1 {
			t.Errorf("%s: exit %v after kill, want -1", res.PCID, res.ExitCode)
		}
	}
	var done tailReply
	api(t, r.HTTP, "GET", "/api/results/"+resultID+"/tail", "", &done)
	if done.Running || done.Live || done.ExitCode == nil || *done.ExitCode != -1 || !strings.Contains(done.Stderr, "killed") {
		t.Fatalf("tail of the killed run %+v", done)
	}
}
