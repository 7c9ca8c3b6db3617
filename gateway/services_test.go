package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/agents"
	"github.com/kanade-go/kanade/services/results"
	"github.com/kanade-go/kanade/services/scheduler"
)

// TestRealServicesParams drives the real results and scheduler services
// through the gateway: query parameters they do not know are ignored, and
// never end up inside a document the client posted.
func TestRealServicesParams(t *testing.T) {
	n := nodetest.Start(t)
	res, err := results.Start(context.Background(), results.Options{Conn: n.Conn(t), DB: n.DB, Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Stop() })
	ag, err := agents.Start(context.Background(), agents.Options{Conn: n.Conn(t), DB: n.DB, Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ag.Stop() })
	sch, err := scheduler.Start(context.Background(), scheduler.Options{Conn: n.Conn(t), DB: n.DB, NodeName: "gw", Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sch.Stop() })
	u := startGateway(t, n, Options{}).URL() + "/api"
	ok := func(t *testing.T, r response) response {
		t.Helper()
		if r.status/100 != 2 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		return r
	}
	stored := func(t *testing.T, path string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(ok(t, do(t, "GET", u+path, nil)).body), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}

	t.Run("query params stay out of a posted manifest, JSON or YAML", func(t *testing.T) {
		ok(t, do(t, "POST", u+"/jobs?dry_run=1", strings.NewReader(`{"id":"j-json","version":"1","execute":{"shell":"sh","script":"true","timeout":"1m"}}`), "Content-Type", "application/json"))
		ok(t, do(t, "POST", u+"/jobs?dry_run=1", strings.NewReader("id: j-yaml\nversion: \"1\"\nexecute: {shell: sh, script: \"true\", timeout: 1m}\n"), "Content-Type", "application/yaml"))
		for _, id := range []string{"j-json", "j-yaml"} {
			if m := stored(t, "/jobs/"+id); m["id"] != id || m["dry_run"] != nil {
				t.Errorf("stored %s: %v", id, m)
			}
		}
		ok(t, do(t, "POST", u+"/schedules?dry_run=1", strings.NewReader(`{"id":"s1","job_id":"j-json","cron":"0 0 3 1 1 *","target":{"pcs":["PC1"]}}`), "Content-Type", "application/json"))
		if m := stored(t, "/schedules/s1"); m["id"] != "s1" || m["dry_run"] != nil {
			t.Errorf("stored schedule: %v", m)
		}
	})
	t.Run("path params reach the service beside a JSON body", func(t *testing.T) {
		// The path names the job, whatever the body says.
		r := ok(t, do(t, "POST", u+"/exec/j-json?_=1", strings.NewReader(`{"job_id":"j-yaml","target":{"pcs":["PC1"]}}`), "Content-Type", "application/json"))
		var ex struct {
			JobID string `json:"job_id"`
		}
		if json.Unmarshal([]byte(r.body), &ex) != nil || ex.JobID != "j-json" {
			t.Fatalf("exec: %s", r.body)
		}
		if r := do(t, "POST", u+"/jobs/j-json/kill?force=1", strings.NewReader(`{}`), "Content-Type", "application/json"); r.status != 204 {
			t.Fatalf("kill with a body: %d %s", r.status, r.body)
		}
	})
	t.Run("a YAML reply keeps its content type; the freeze round-trips", func(t *testing.T) {
		r := ok(t, do(t, "GET", u+"/jobs/j-yaml/yaml", nil))
		if r.header.Get("Content-Type") != "application/yaml" || !strings.HasPrefix(r.body, "id: j-yaml\n") {
			t.Errorf("job yaml: %q %q", r.header.Get("Content-Type"), r.body)
		}
		put := ok(t, do(t, "PUT", u+"/freeze", strings.NewReader(`{"until":"2027-01-05","reason":"year-end","tz":"local"}`), "Content-Type", "application/json"))
		if put.body != `{"until":"2027-01-05","reason":"year-end","tz":"local"}` || ok(t, do(t, "GET", u+"/freeze", nil)).body != put.body {
			t.Errorf("freeze: %s", put.body)
		}
		if r := do(t, "DELETE", u+"/freeze", nil); r.status != 204 || ok(t, do(t, "GET", u+"/freeze", nil)).body != "null" {
			t.Errorf("thaw: %d", r.status)
		}
	})
	t.Run("unknown query params are ignored", func(t *testing.T) {
		ok(t, do(t, "POST", u+"/schedules/s1/disable?cascade=true", nil))
		if m := stored(t, "/schedules/s1"); m["enabled"] != false {
			t.Errorf("disable?cascade=true did not disable: %v", m)
		}
		for _, p := range []string{"/agents?x=1", "/agents?_=1764201600000", "/results?_=1&limit=5", "/executions?nope=1", "/jobs?_=1", "/schedules/upcoming?limit=3&_=1"} {
			ok(t, do(t, "GET", u+p, nil))
		}
		// A known parameter with a bad value is still a 400 naming it.
		for p, name := range map[string]string{"/results?limit=x&_=1": "limit", "/results?status=sideways&_=1": "status"} {
			if r := do(t, "GET", u+p, nil); r.status != 400 || !strings.Contains(r.body, name) {
				t.Errorf("%s: %d %s", p, r.status, r.body)
			}
		}
	})
}
