package gateway

import (
	"context"
	"strings"
	"testing"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
)

// A route is checked against its tier; one whose tier the gateway does not
// know is refused, whoever calls. The static token is an admin.
func TestRouteTiers(t *testing.T) {
	n := nodetest.Start(t)
	startService(t, n.Conn(t), api.Service{Name: "tiered", Endpoints: []api.Endpoint{
		{Name: "none", Subject: "kanade.tiered.none", HTTP: "GET /api/tiered/none", Handler: echo},
		{Name: "odd", Subject: "kanade.tiered.odd", HTTP: "GET /api/tiered/odd", Tier: "superuser", Handler: echo},
		{Name: "admin", Subject: "kanade.tiered.admin", HTTP: "GET /api/tiered/admin", Tier: api.TierAdmin, Handler: echo},
	}})
	g := startGateway(t, n, Options{APIToken: "s3cret"})
	if err := g.RefreshRoutes(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/api/tiered/none", "/api/tiered/odd"} {
		r := do(t, "GET", g.URL()+p, nil, "Authorization", "Bearer s3cret")
		if r.status != 403 || !strings.Contains(r.body, "declares no known tier") {
			t.Errorf("%s: %d %q", p, r.status, r.body)
		}
	}
	e, _ := do(t, "GET", g.URL()+"/api/tiered/admin", nil, "Authorization", "Bearer s3cret").echoed(t)
	if got := e.Headers[api.HeaderActor]; len(got) != 1 || got[0] != ServiceTokenUser {
		t.Fatalf("actor header %v", e.Headers)
	}
	if r := do(t, "GET", g.URL()+"/api/tiered/admin", nil); r.status != 401 {
		t.Fatalf("no token: %d %q", r.status, r.body)
	}
}

func TestAllowed(t *testing.T) {
	route := Route{Method: "POST", Path: "/api/exec/{job_id}", Tier: api.TierOperator}
	cases := []struct {
		id     *Identity
		status int
		text   string
	}{
		{&Identity{User: "v", Role: "viewer"}, 403, "operator role required (caller is viewer)"},
		{&Identity{User: "o", Role: "operator"}, 0, ""},
		{&Identity{User: "a", Role: "admin"}, 0, ""},
		{nil, 401, "missing bearer token"},
	}
	for _, c := range cases {
		if st, text := allowed(route, c.id); st != c.status || text != c.text {
			t.Errorf("%+v: %d %q", c.id, st, text)
		}
	}
	if st, _ := allowed(Route{Tier: api.TierPublic}, nil); st != 0 {
		t.Error("public route refused")
	}
}

func TestFeatureAllowed(t *testing.T) {
	jobs := []string{"jobs"}
	exec := []string{"exec"}
	cases := []struct {
		method, path string
		features     *[]string
		want         string
	}{
		{"GET", "/api/results", nil, ""},
		{"GET", "/api/auth/me", &[]string{}, ""},
		{"GET", "/api/results/{result_id}", &jobs, "account not permitted to access this page (requires activity)"},
		{"GET", "/api/jobs", &exec, ""}, // a shared read route
		{"POST", "/api/jobs", &exec, "account not permitted to access this page (requires jobs)"},
		{"POST", "/api/exec/{job_id}", &exec, ""},
		{"POST", "/api/jobs/{job_id}/kill", &jobs, ""},
		{"GET", "/api/cluster", &jobs, "account not permitted to access this route"},
	}
	for _, c := range cases {
		if got := featureAllowed(Route{Method: c.method, Path: c.path}, c.method, c.features); got != c.want {
			t.Errorf("%s %s %v: %q, want %q", c.method, c.path, c.features, got, c.want)
		}
	}
}

func TestStricterTier(t *testing.T) {
	routes := []Route{
		{Subject: "kanade.jobs.exec", Tier: api.TierViewer},
		{Subject: "kanade.jobs.list", Tier: api.TierOperator},
		{Subject: "kanade.x", Tier: ""},
	}
	stricter(routes, []Route{{Subject: "kanade.jobs.exec", Tier: api.TierOperator}, {Subject: "kanade.jobs.list", Tier: api.TierViewer}, {Subject: "kanade.x", Tier: api.TierViewer}})
	if routes[0].Tier != api.TierOperator || routes[1].Tier != api.TierOperator || routes[2].Tier != "" {
		t.Fatalf("%+v", routes)
	}
}
