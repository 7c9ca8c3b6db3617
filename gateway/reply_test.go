package gateway

import (
	"context"
	"testing"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
)

// A service's reply headers reach the HTTP response: X-* counts, a
// Content-Type other than JSON, a status beside a body; the gateway's own
// security headers and NATS's are not overwritten or leaked.
func TestReplyHeadersPassThrough(t *testing.T) {
	n := nodetest.Start(t)
	startService(t, n.Conn(t), api.Service{Name: "replytest", Endpoints: []api.Endpoint{
		{Name: "page", Subject: "kanade.replytest.page", HTTP: "GET /api/replytest/page", Tier: api.TierViewer,
			Handler: func(context.Context, api.Request) (any, error) {
				return api.Reply{Header: map[string]string{"X-Total-Count": "42", "X-Frame-Options": "ALLOWALL", "Nats-Secret": "x"}, Body: []int{1}}, nil
			}},
		{Name: "text", Subject: "kanade.replytest.text", HTTP: "GET /api/replytest/text", Tier: api.TierViewer,
			Handler: func(context.Context, api.Request) (any, error) { return api.Text("a <b> & c\n"), nil }},
		{Name: "empty", Subject: "kanade.replytest.empty", HTTP: "GET /api/replytest/empty", Tier: api.TierViewer,
			Handler: func(context.Context, api.Request) (any, error) { return api.Text(""), nil }},
		{Name: "degraded", Subject: "kanade.replytest.degraded", HTTP: "GET /api/replytest/degraded", Tier: api.TierViewer,
			Handler: func(context.Context, api.Request) (any, error) {
				return api.Reply{Status: 503, Body: map[string]string{"status": "degraded"}}, nil
			}},
	}})
	u := startGateway(t, n, Options{}).URL() + "/api/replytest"
	r := do(t, "GET", u+"/page", nil)
	if r.status != 200 || r.body != "[1]" || r.header.Get("X-Total-Count") != "42" || r.header.Get("Content-Type") != "application/json" ||
		r.header.Get("X-Frame-Options") != "DENY" || r.header.Get("Nats-Secret") != "" {
		t.Errorf("page: %d %q %v", r.status, r.body, r.header)
	}
	r = do(t, "GET", u+"/text", nil)
	if r.status != 200 || r.body != "a <b> & c\n" || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("text: %d %q %v", r.status, r.body, r.header)
	}
	r = do(t, "GET", u+"/empty", nil)
	if r.status != 200 || r.body != "" || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("empty text: %d %q %v", r.status, r.body, r.header)
	}
	r = do(t, "GET", u+"/degraded", nil)
	if r.status != 503 || r.body != `{"status":"degraded"}` || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("degraded: %d %q %v", r.status, r.body, r.header)
	}
}
