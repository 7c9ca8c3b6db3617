package sim_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/sim"
	"github.com/kanade-go/kanade/wire"
)

// call makes an HTTP request and returns its status and body, whatever
// the status.
func call(t *testing.T, base, method, path, body string) (int, string) {
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
	return resp.StatusCode, string(b)
}

// execResults runs job on pcs through the API and waits until every PC
// answered; it returns the results by pc_id and the execution's
// skipped_count.
func execResults(t *testing.T, base, job string, pcs []string) (map[string]execResult, int) {
	t.Helper()
	target, _ := json.Marshal(map[string]any{"target": map[string]any{"pcs": pcs}})
	var rep struct {
		ExecID string `json:"exec_id"`
	}
	api(t, base, "POST", "/api/exec/"+job, string(target), &rep)
	out := map[string]execResult{}
	skipped := 0
	waitFor(t, "every PC's result of "+job, func() bool {
		var ex struct {
			Execution struct {
				SkippedCount int `json:"skipped_count"`
			} `json:"execution"`
			Results []execResult `json:"results"`
		}
		if api(t, base, "GET", "/api/executions/"+rep.ExecID, "", &ex) != http.StatusOK {
			return false
		}
		clear(out)
		for _, r := range ex.Results {
			if r.ExitCode != nil {
				out[r.PCID] = r
			}
		}
		skipped = ex.Execution.SkippedCount
		return len(out) == len(pcs)
	})
	return out, skipped
}

type execResult struct {
	PCID     string `json:"pc_id"`
	ExitCode *int64 `json:"exit_code"`
}

// Through a whole node: an ad-hoc run answers with the PC's output; a
// revoked job's next exec is skipped by the agents with 126 (script_status
// written as agents read it) and runs again once unrevoked; exec pins
// script_current; /metrics parses as Prometheus text.
func TestRunRevokeAndMetricsThroughTheAPI(t *testing.T) {
	r := runNode(t, embedded.SyncInterval)
	nc, err := nats.Connect(r.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	f, err := sim.Start(context.Background(), sim.Options{Conn: nc, Agents: 3, Exec: true, Logger: nodetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	pcs := f.PCIDs()

	// POST /api/run: the shell's output on one PC.
	status, body := call(t, r.HTTP, "POST", "/api/run", `{"pc_id":"`+pcs[0]+`","shell":"sh","script":"printf 'hello from %s' \"$(echo run)\"","timeout_secs":10}`)
	if status != http.StatusOK {
		t.Fatalf("POST /api/run: %d %s", status, body)
	}
	res, err := wire.DecodeResult([]byte(body))
	if err != nil || res.Stdout != "hello from run" || res.ExitCode != 0 || res.PCID != pcs[0] {
		t.Fatalf("run result %+v (%v)", res, err)
	}

	// Revoke.
	api(t, r.HTTP, "POST", "/api/jobs", `{"id":"rev-job","version":"2.1.0","execute":{"shell":"sh","script":"echo ran","timeout":"30s"}}`, nil)
	before, _ := execResults(t, r.HTTP, "rev-job", pcs)
	for pc, res := range before {
		if *res.ExitCode != 0 {
			t.Fatalf("%s before revoke: exit %d", pc, *res.ExitCode)
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	pins, err := js.KeyValue(context.Background(), wire.BucketScriptCurrent)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := pins.Get(context.Background(), "rev-job"); err != nil || string(e.Value()) != "2.1.0" {
		t.Fatalf("script_current[rev-job] = %v (%v), want the raw version 2.1.0", e, err)
	}

	if s, b := call(t, r.HTTP, "POST", "/api/scripts/rev-job/revoke", ""); s != http.StatusNoContent || b != "" {
		t.Fatalf("revoke: %d %q", s, b)
	}
	statusKV, err := js.KeyValue(context.Background(), wire.BucketScriptStatus)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := statusKV.Get(context.Background(), "rev-job"); err != nil || string(e.Value()) != "REVOKED" {
		t.Fatalf("script_status[rev-job] = %v (%v), want the raw bytes REVOKED", e, err)
	}
	var all map[string]string
	api(t, r.HTTP, "GET", "/api/scripts/status", "", &all)
	if all["rev-job"] != "REVOKED" {
		t.Fatalf("scripts/status %v", all)
	}
	revoked, skipped := execResults(t, r.HTTP, "rev-job", pcs)
	for pc, res := range revoked {
		if *res.ExitCode != wire.ExitRevoked {
			t.Fatalf("%s after revoke: exit %d", pc, *res.ExitCode)
		}
	}
	if skipped != len(pcs) {
		t.Fatalf("skipped_count %d after revoke, want %d (the agents mark 126 skipped)", skipped, len(pcs))
	}

	if s, b := call(t, r.HTTP, "POST", "/api/scripts/rev-job/unrevoke", ""); s != http.StatusNoContent {
		t.Fatalf("unrevoke: %d %q", s, b)
	}
	after, _ := execResults(t, r.HTTP, "rev-job", pcs)
	for pc, res := range after {
		if *res.ExitCode != 0 {
			t.Fatalf("%s after unrevoke: exit %d", pc, *res.ExitCode)
		}
	}

	// The manifest schema is JSON Schema 2020-12.
	var schema map[string]any
	api(t, r.HTTP, "GET", "/api/schemas/manifest.json", "", &schema)
	if schema["$schema"] != "https://json-schema.org/draft/2020-12/schema" || schema["title"] != "Manifest" {
		t.Fatalf("schema head %v %v", schema["$schema"], schema["title"])
	}

	// The home feeds over HTTP.
	waitFor(t, "health ok with 3 active agents", func() bool {
		status, body := call(t, r.HTTP, "GET", "/api/health/fleet", "")
		var f struct {
			Status string `json:"status"`
			Agents struct {
				Active int `json:"active"`
			} `json:"agents"`
		}
		return status == http.StatusOK && json.Unmarshal([]byte(body), &f) == nil && f.Status == "ok" && f.Agents.Active == 3
	})
	var usage struct {
		Streams []struct {
			Name   string `json:"name"`
			Exists bool   `json:"exists"`
		} `json:"streams"`
	}
	api(t, r.HTTP, "GET", "/api/jetstream/status", "", &usage)
	if len(usage.Streams) < 2 || usage.Streams[1].Name != "RESULTS" || !usage.Streams[1].Exists {
		t.Fatalf("jetstream/status streams %+v", usage.Streams)
	}

	// /metrics: the text format, with the series a board needs.
	waitFor(t, "3 alive agents", func() bool {
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
		return n == 3
	})
	status, body = call(t, r.HTTP, "GET", "/metrics", "")
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d %s", status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	for _, name := range []string{"kanade_http_requests_total", "kanade_http_request_duration_seconds",
		"kanade_projector_lag_messages", "kanade_projector_rate_per_second", "kanade_agents", "kanade_executions",
		"kanade_jetstream_bytes", "kanade_source_up"} {
		if families[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		for _, m := range families[name].GetMetric() {
			match := true
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				match = match && found
			}
			if match {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue(), true
				}
				return m.GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	if v, ok := value("kanade_http_requests_total", map[string]string{"route": "POST /api/run", "code": "200"}); !ok || v != 1 {
		t.Errorf("requests of POST /api/run: %v %v", v, ok)
	}
	if v, ok := value("kanade_executions", map[string]string{"status": "completed"}); !ok || v < 3 {
		t.Errorf("completed executions: %v %v", v, ok)
	}
	if v, ok := value("kanade_agents", map[string]string{"state": "active"}); !ok || v != 3 {
		t.Errorf("active agents: %v %v", v, ok)
	}
	if v, ok := value("kanade_jetstream_messages", map[string]string{"kind": "stream", "name": "RESULTS"}); !ok || v < 10 {
		t.Errorf("RESULTS messages: %v %v", v, ok)
	}
	for _, src := range []string{"projector", "health", "executions", "jetstream"} {
		if v, _ := value("kanade_source_up", map[string]string{"source": src}); v != 1 {
			t.Errorf("source %s not up", src)
		}
	}
}
