package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/kanade-go/kanade/gateway"
	"github.com/kanade-go/kanade/node"
	"github.com/kanade-go/kanade/wire"
)

// reply is one answer, over either transport, as status and body.
type reply struct {
	status int
	body   string
}

func httpCall(t *testing.T, method, url, contentType, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(b)}
}

// natsCall is what a NATS client sees, with the micro error code as status.
func natsCall(t *testing.T, nc *nats.Conn, subject, body string, hdr nats.Header) reply {
	t.Helper()
	m, err := nc.RequestMsg(&nats.Msg{Subject: subject, Data: []byte(body), Header: hdr}, 10*time.Second)
	if err != nil {
		t.Fatalf("nats %s: %v", subject, err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		n, _ := strconv.Atoi(code)
		return reply{n, string(m.Data)}
	}
	if len(m.Data) == 0 {
		return reply{204, ""}
	}
	return reply{200, string(m.Data)}
}

// without drops volatile keys anywhere in a JSON document.
func without(body string, keys ...string) string {
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		return body
	}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, k := range keys {
				delete(x, k)
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	b, _ := json.Marshal(v)
	return string(b)
}

// TestGatewayContract runs the real binary and checks every contract route:
// the route table matches the services' own INFO, and each route answers
// over HTTP exactly what the service answers over NATS.
func TestGatewayContract(t *testing.T) {
	p := startKanade(t, t.TempDir())
	nc, err := nats.Connect(p.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	api := p.HTTP + "/api"

	t.Run("contract table matches live INFO", func(t *testing.T) {
		key := func(r gateway.Route) string {
			return fmt.Sprintf("%s -> %s (service %s, ints %v, tier %s)", r.Pattern(), r.Subject, r.Service, r.IntParams, r.Tier)
		}
		var want []string
		for _, r := range gateway.RoutesOf(node.Definitions()) {
			want = append(want, key(r))
		}
		slices.Sort(want)
		routes, bad, err := gateway.Discover(ctx, nc, 5*time.Second, 200*time.Millisecond)
		if err != nil || len(bad) > 0 {
			t.Fatalf("discover: %v %v", err, bad)
		}
		var got []string
		for _, r := range routes {
			got = append(got, key(r))
		}
		slices.Sort(got)
		got = slices.Compact(got)
		if !slices.Equal(got, want) {
			t.Fatalf("live routes differ from the definitions:\nlive:\n  %s\ncontract:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	})

	// both sends the same request both ways and wants the same answer.
	both := func(t *testing.T, method, path, contentType, httpBody, subject, natsBody string, hdr nats.Header, volatile ...string) reply {
		t.Helper()
		h := httpCall(t, method, api+path, contentType, httpBody)
		n := natsCall(t, nc, subject, natsBody, hdr)
		if len(volatile) > 0 {
			h.body, n.body = without(h.body, volatile...), without(n.body, volatile...)
		}
		if h != n {
			t.Fatalf("%s %s: HTTP %d %s\nNATS %s: %d %s", method, path, h.status, h.body, subject, n.status, n.body)
		}
		return h
	}
	wantStatus := func(t *testing.T, r reply, status int) {
		t.Helper()
		if r.status != status {
			t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
		}
	}

	// Jobs: YAML over HTTP (passed through with its Content-Type), the same
	// manifest as JSON over NATS; both store and answer the same document.
	manifestYAML := "id: backup\nversion: \"3\"\ndescription: nightly backup\nexecute:\n  shell: sh\n  script: echo backup\n  timeout: 5m\n"
	manifestJSON := `{"id":"backup","version":"3","description":"nightly backup","execute":{"shell":"sh","script":"echo backup","timeout":"5m"}}`
	wantStatus(t, both(t, "POST", "/jobs", "application/yaml", manifestYAML, "kanade.jobs.put", manifestJSON, nil), 200)
	for _, id := range []string{"gone-1", "gone-2"} {
		m := strings.ReplaceAll(manifestJSON, `"backup"`, `"`+id+`"`)
		wantStatus(t, natsCall(t, nc, "kanade.jobs.put", m, nil), 200)
	}
	wantStatus(t, both(t, "POST", "/jobs", "application/yaml", "id: [", "kanade.jobs.put", "id: [", nats.Header{"Content-Type": {"application/yaml"}}), 400)

	// Schedules: a yearly cron, so nothing fires during the test.
	sched := `{"id":"yearly","job_id":"backup","cron":"0 0 3 1 1 *","tz":"UTC","target":{"pcs":["PC1"]}}`
	wantStatus(t, both(t, "POST", "/schedules", "application/json", sched, "kanade.schedules.put", sched, nil), 200)
	for _, id := range []string{"gone-1", "gone-2"} {
		wantStatus(t, natsCall(t, nc, "kanade.schedules.put", strings.ReplaceAll(sched, `"yearly"`, `"`+id+`"`), nil), 200)
	}

	// An agent's heartbeat, a finished result, and two executions.
	hb, _ := json.Marshal(wire.Heartbeat{PCID: "PC1", At: time.Now().UTC(), AgentVersion: "0.43.0"})
	if err := nc.Publish(wire.HeartbeatSubject("PC1"), hb); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	started := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	resultID := "5f0c2d8e-1111-4a2b-9c3d-000000000001"
	res, _ := json.Marshal(wire.ExecResult{ResultID: resultID, RequestID: "req-1", PCID: "PC1", ExitCode: 3,
		Stdout: "hello\n", Stderr: "oops\n", StartedAt: started, FinishedAt: started.Add(2 * time.Second)})
	if _, err := js.Publish(ctx, wire.Results("req-1"), res); err != nil {
		t.Fatal(err)
	}
	target := `{"target":{"pcs":["PC1"]},"jitter":"0s"}`
	ex := both(t, "POST", "/exec/backup", "", target, "kanade.jobs.exec", `{"job_id":"backup","target":{"pcs":["PC1"]},"jitter":"0s"}`, nil, "exec_id")
	wantStatus(t, ex, 200)
	var execReply struct {
		ExecID string `json:"exec_id"`
	}
	json.Unmarshal([]byte(natsCall(t, nc, "kanade.jobs.exec", `{"job_id":"backup","target":{"pcs":["PC1"]}}`, nil).body), &execReply)

	// Wait for the projection to hold all of it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		a := natsCall(t, nc, "kanade.agents.list", "{}", nil)
		r := natsCall(t, nc, "kanade.results.list", "{}", nil)
		e := natsCall(t, nc, "kanade.executions.list", "{}", nil)
		if strings.Contains(a.body, `"PC1"`) && strings.Contains(r.body, resultID) && strings.Count(e.body, `"exec_id"`) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("projection incomplete:\nagents %s\nresults %s\nexecutions %s", a.body, r.body, e.body)
		}
		time.Sleep(100 * time.Millisecond)
	}

	for _, c := range []struct {
		path, subject, body string
		status              int
		has                 string // a sign the answer carries the data
	}{
		{"/results", "kanade.results.list", `{}`, 200, resultID},
		{"/results?limit=1&status=failure&pc_id=%5EPC1%24", "kanade.results.list", `{"limit":1,"status":"failure","pc_id":"^PC1$"}`, 200, `"exit_code":3`},
		{"/results/" + resultID, "kanade.results.detail", `{"result_id":"` + resultID + `"}`, 200, `"stdout":"hello\n"`},
		{"/results/no-such-result", "kanade.results.detail", `{"result_id":"no-such-result"}`, 404, "no-such-result"},
		{"/results/" + resultID + "/tail", "kanade.results.tail", `{"result_id":"` + resultID + `"}`, 200, `"running":false`},
		{"/results?status=sideways", "kanade.results.list", `{"status":"sideways"}`, 400, "sideways"},
		{"/executions", "kanade.executions.list", `{}`, 200, execReply.ExecID},
		{"/executions?limit=1&job_id=backup", "kanade.executions.list", `{"limit":1,"job_id":"backup"}`, 200, `"job_id":"backup"`},
		{"/executions/" + execReply.ExecID, "kanade.executions.detail", `{"exec_id":"` + execReply.ExecID + `"}`, 200, execReply.ExecID},
		{"/agents", "kanade.agents.list", `{}`, 200, `"pc_id":"PC1"`},
		{"/jobs", "kanade.jobs.list", `{}`, 200, "gone-2"},
		{"/jobs/backup", "kanade.jobs.get", `{"job_id":"backup"}`, 200, "nightly backup"},
		{"/jobs/nope", "kanade.jobs.get", `{"job_id":"nope"}`, 404, "nope"},
		{"/schedules", "kanade.schedules.list", `{}`, 200, "yearly"},
		{"/schedules/yearly", "kanade.schedules.get", `{"id":"yearly"}`, 200, "0 0 3 1 1 *"},
		{"/schedules/yearly/preview?count=3", "kanade.schedules.preview", `{"id":"yearly","count":3}`, 200, "-01-01T03:00:00+00:00"},
		{"/schedules/upcoming?limit=2", "kanade.schedules.upcoming", `{"limit":2}`, 200, "next_run"},
	} {
		t.Run("GET "+c.path, func(t *testing.T) {
			r := both(t, "GET", c.path, "", "", c.subject, c.body, nil)
			wantStatus(t, r, c.status)
			if !strings.Contains(r.body, c.has) {
				t.Fatalf("answer lacks %q: %s", c.has, r.body)
			}
		})
	}
	t.Run("GET /projector/status", func(t *testing.T) {
		// Rates and ages move between two calls; the rest must agree.
		both(t, "GET", "/projector/status", "", "", "kanade.projector.status", `{}`, nil, "rate_per_sec", "behind_secs")
	})
	t.Run("schedule enable and disable", func(t *testing.T) {
		wantStatus(t, both(t, "POST", "/schedules/yearly/disable", "", "", "kanade.schedules.disable", `{"id":"yearly"}`, nil), 204)
		wantStatus(t, both(t, "POST", "/schedules/yearly/enable", "", "", "kanade.schedules.enable", `{"id":"yearly"}`, nil), 204)
	})
	t.Run("kill", func(t *testing.T) {
		wantStatus(t, both(t, "POST", "/jobs/backup/kill", "", "", "kanade.jobs.kill", `{"job_id":"backup"}`, nil), 204)
	})
	t.Run("deletes", func(t *testing.T) {
		wantStatus(t, both(t, "DELETE", "/jobs/backup", "", "", "kanade.jobs.delete", `{"job_id":"backup"}`, nil), 409)
		h := httpCall(t, "DELETE", api+"/schedules/gone-1", "", "")
		n := natsCall(t, nc, "kanade.schedules.delete", `{"id":"gone-2"}`, nil)
		if h != n || h.status != 204 {
			t.Fatalf("schedule delete: HTTP %v NATS %v", h, n)
		}
		h = httpCall(t, "DELETE", api+"/jobs/gone-1", "", "")
		n = natsCall(t, nc, "kanade.jobs.delete", `{"job_id":"gone-2"}`, nil)
		if h != n || h.status != 204 {
			t.Fatalf("job delete: HTTP %v NATS %v", h, n)
		}
		wantStatus(t, httpCall(t, "GET", api+"/jobs/gone-1", "", ""), 404)
	})
	t.Run("an int param that is not an integer", func(t *testing.T) {
		wantStatus(t, httpCall(t, "GET", api+"/results?limit=many", "", ""), 400)
	})
	if !bytes.Contains([]byte(p.Stderr()), []byte(`method=GET path=/api/results/`+resultID+` status=200`)) {
		t.Fatalf("no access log line for /api/results:\n%s", p.Stderr())
	}
}

// TestGatewayFlags checks the token from the environment and the CORS
// origins from the flag reach the running gateway.
func TestGatewayFlags(t *testing.T) {
	t.Setenv("KANADE_API_TOKEN", "env-token")
	p := startKanade(t, t.TempDir(), "--cors-origins", "https://a.example, https://b.example", "--api-timeout", "3s")
	do := func(method, path string, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, p.HTTP+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := do("GET", "/api/results"); r.StatusCode != 401 {
		t.Fatalf("no token: %d", r.StatusCode)
	}
	if r := do("GET", "/api/results", "Authorization", "Bearer env-token"); r.StatusCode != 200 {
		t.Fatalf("token: %d", r.StatusCode)
	}
	if r := do("GET", "/api/version"); r.StatusCode != 200 {
		t.Fatalf("version: %d", r.StatusCode)
	}
	r := do("OPTIONS", "/api/results", "Origin", "https://b.example", "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "authorization") // browsers send it lower case
	if r.Header.Get("Access-Control-Allow-Origin") != "https://b.example" {
		t.Fatalf("preflight from a listed origin: %d %v", r.StatusCode, r.Header)
	}
	r = do("OPTIONS", "/api/results", "Origin", "https://c.example", "Access-Control-Request-Method", "GET")
	if r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %v", r.Header)
	}
	if err, stderr := runKanade(t, 30*time.Second, "serve", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--max-body", "-1"); err == nil || !strings.Contains(stderr, "max body") {
		t.Fatalf("negative --max-body: %v %s", err, stderr)
	}
}
