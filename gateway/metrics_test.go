package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
)

// A route that declares a longer timeout is waited for past the gateway's
// API timeout; others still time out at it. /metrics counts both and asks
// for the API token when there is one.
func TestRouteTimeoutAndMetrics(t *testing.T) {
	n := nodetest.Start(t)
	slow := func(ctx context.Context, r api.Request) (any, error) {
		time.Sleep(700 * time.Millisecond)
		return map[string]bool{"ok": true}, nil
	}
	svc, err := api.Start(n.Conn(t), api.Service{Name: "slow", Logger: n.Logger, Endpoints: []api.Endpoint{
		{Name: "long", Subject: "kanade.slow.long", HTTP: "POST /api/slow/long", Tier: api.TierOperator, Timeout: 5 * time.Second, Handler: slow},
		{Name: "short", Subject: "kanade.slow.short", HTTP: "POST /api/slow/short", Tier: api.TierOperator, Handler: slow},
		{Name: "doc", Subject: "kanade.slow.doc", HTTP: "GET /api/slow/doc", Tier: api.TierViewer,
			Handler: func(ctx context.Context, r api.Request) (any, error) {
				return nil, &api.Error{Status: 503, Message: `{"status":"degraded"}`, JSON: true}
			}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	g := startGateway(t, n, Options{APITimeout: 300 * time.Millisecond, APIToken: "s3cret"})
	if err := g.RefreshRoutes(context.Background()); err != nil {
		t.Fatal(err)
	}
	auth := []string{"Authorization", "Bearer s3cret"}
	if r := do(t, "POST", g.URL()+"/api/slow/long", nil, auth...); r.status != 200 || !strings.Contains(r.body, `"ok":true`) {
		t.Fatalf("long route: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", g.URL()+"/api/slow/short", nil, auth...); r.status != 504 {
		t.Fatalf("short route: %d %s, want 504 at the API timeout", r.status, r.body)
	}

	// An error whose body is a document keeps its JSON content type.
	if r := do(t, "GET", g.URL()+"/api/slow/doc", nil, auth...); r.status != 503 || r.body != `{"status":"degraded"}` || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("JSON error: %d %q %q", r.status, r.header.Get("Content-Type"), r.body)
	}
	if r := do(t, "GET", g.URL()+"/metrics", nil); r.status != 401 {
		t.Fatalf("/metrics without the token: %d", r.status)
	}
	r := do(t, "GET", g.URL()+"/metrics", nil, auth...)
	if r.status != 200 {
		t.Fatalf("/metrics: %d %s", r.status, r.body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, m := range fams["kanade_http_requests_total"].GetMetric() {
		var route, code string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "route":
				route = l.GetValue()
			case "code":
				code = l.GetValue()
			}
		}
		counts[route+" "+code] = m.GetCounter().GetValue()
	}
	if counts["POST /api/slow/long 200"] != 1 || counts["POST /api/slow/short 504"] != 1 {
		t.Fatalf("request counts %v", counts)
	}
	if n := len(fams["kanade_http_request_errors_total"].GetMetric()); n != 2 {
		t.Fatalf("error series: %d, want the 504 and 503 routes'", n)
	}
	// Nothing answers the scrape's questions here: the sources say so.
	for _, m := range fams["kanade_source_up"].GetMetric() {
		if m.GetGauge().GetValue() != 0 {
			t.Fatalf("a source is up without its service: %v", m)
		}
	}
}
