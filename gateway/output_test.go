package gateway

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
)

// The output route streams every page; a service error on the first page
// is the response's status; a failure after that cuts the body short, so
// the download cannot pass for complete.
func TestOutputStreamsPages(t *testing.T) {
	n := nodetest.Start(t)
	const total = 10
	startService(t, n.Conn(t), api.Service{Name: "results", Endpoints: []api.Endpoint{{
		Name: "output", Subject: outputSubject, HTTP: "GET /api/results/{result_id}/output/{stream}", Tier: api.TierViewer,
		Handler: func(ctx context.Context, r api.Request) (any, error) {
			var p struct {
				ResultID string `json:"result_id"`
				Stream   string `json:"stream"`
				Offset   int    `json:"offset"`
			}
			if err := api.Params(r, &p); err != nil {
				return nil, err
			}
			switch {
			case p.ResultID == "nope":
				return nil, api.NotFound("result nope not found")
			case p.ResultID == "broken" && p.Offset > 0:
				return nil, api.Unavailable("gone")
			}
			// Three bytes a page, as a service with a small max_payload would.
			data := strings.Repeat("a", total)[p.Offset:min(p.Offset+3, total)]
			return map[string]any{"total": total, "data": []byte(data)}, nil
		}}}})
	g := startGateway(t, n, Options{})
	get := func(id string) (*http.Response, string, error) {
		resp, err := http.Get(g.URL() + "/api/results/" + id + "/output/stdout")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, string(b), err
	}
	if resp, body, err := get("ok"); err != nil || resp.StatusCode != 200 || body != strings.Repeat("a", total) || resp.ContentLength != total {
		t.Fatalf("whole: %v %d %q %d", err, resp.StatusCode, body, resp.ContentLength)
	}
	if resp, body, _ := get("nope"); resp.StatusCode != 404 || body != "result nope not found" {
		t.Fatalf("unknown: %d %q", resp.StatusCode, body)
	}
	if resp, body, err := get("broken"); resp.StatusCode != 200 || err == nil || len(body) >= total {
		t.Fatalf("cut short: %d %q %v", resp.StatusCode, body, err)
	}
}
