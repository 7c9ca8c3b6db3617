package api_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
)

// trail keeps records in memory; fail makes Record fail.
type trail struct {
	mu      sync.Mutex
	entries []api.Entry
	fail    bool
}

func (t *trail) Record(_ context.Context, e api.Entry) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fail {
		return errors.New("stream down")
	}
	t.entries = append(t.entries, e)
	return nil
}

// A mutating endpoint is recorded before its handler runs, secrets
// redacted; a failed call gets a second record; a trail that cannot
// record refuses the call before the handler runs.
func TestAuditBeforeTheChange(t *testing.T) {
	n := nodetest.Start(t)
	nc := n.Conn(t)
	tr := &trail{}
	var changed atomic.Int32
	svc, err := api.Start(nc, api.Service{Name: "audited", Audit: tr, Endpoints: []api.Endpoint{
		{Name: "put", Subject: "kanade.audited.put", Tier: api.TierOperator, Audit: "thing_put", AuditTarget: "id",
			Handler: func(ctx context.Context, r api.Request) (any, error) {
				tr.mu.Lock()
				recorded := len(tr.entries)
				tr.mu.Unlock()
				if recorded == 0 {
					t.Error("handler ran before its record")
				}
				changed.Add(1)
				if strings.Contains(string(r.Data), "bad") {
					return nil, api.NotFound("no such thing")
				}
				return nil, nil
			}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	req := func(body string) *nats.Msg {
		m, err := nc.RequestMsg(&nats.Msg{Subject: "kanade.audited.put", Data: []byte(body),
			Header: nats.Header{api.HeaderActor: {"alice"}, api.HeaderAddr: {"10.1.2.3"}}}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	req(`{"id":"x1","password":"hunter22","nested":{"token":"abc"}}`)
	if len(tr.entries) != 1 {
		t.Fatalf("entries %+v", tr.entries)
	}
	e := tr.entries[0]
	if e.Actor != "alice" || e.Action != "thing_put" || e.Target != "x1" || e.Addr != "10.1.2.3" ||
		strings.Contains(string(e.Payload), "hunter22") || strings.Contains(string(e.Payload), "abc") {
		t.Fatalf("entry %+v payload %s", e, e.Payload)
	}
	req(`{"id":"bad"}`)
	if len(tr.entries) != 3 || !strings.HasPrefix(tr.entries[2].Error, "404 no such thing") {
		t.Fatalf("failed call: %+v", tr.entries)
	}
	tr.mu.Lock()
	tr.fail = true
	tr.mu.Unlock()
	m := req(`{"id":"x2"}`)
	if m.Header.Get(micro.ErrorCodeHeader) != "503" || changed.Load() != 2 {
		t.Fatalf("trail down: %s %q, handler ran %d times", m.Header.Get(micro.ErrorCodeHeader), m.Data, changed.Load())
	}
	// A NATS caller that names nobody is "nats".
	tr.mu.Lock()
	tr.fail = false
	tr.mu.Unlock()
	nc.Request("kanade.audited.put", []byte(`{"id":"x3"}`), 5*time.Second)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if got := tr.entries[len(tr.entries)-1].Actor; got != "nats" {
		t.Fatalf("NATS caller actor %q", got)
	}
}

// TestCallerActorFromTheServer: a request that nats-server stamped (it
// came through a service import) names the user the server saw, whatever
// the caller wrote in HeaderActor; one it did not stamp names whom the
// backend's own caller named.
func TestCallerActorFromTheServer(t *testing.T) {
	req := func(h map[string]string) api.Request {
		r := api.Request{Header: micro.Headers{}}
		for k, v := range h {
			r.Header[k] = []string{v}
		}
		return r
	}
	cases := []struct {
		name      string
		h         map[string]string
		actor     string
		addr      string
		callActor string
	}{
		{"the gateway's", map[string]string{api.HeaderActor: "alice", api.HeaderAddr: "10.0.0.9"}, "alice", "10.0.0.9", "alice"},
		{"a backend tool that named no one", nil, "", "", "nats"},
		{"a caller's, stamped", map[string]string{api.HeaderActor: "admin", api.HeaderAddr: "1.2.3.4",
			api.HeaderRequestInfo: `{"acc":"USER_vic","user":"vic","host":"127.0.0.1","rtt":1}`}, "nats:vic", "127.0.0.1", "nats:vic"},
		{"stamped without share", map[string]string{api.HeaderActor: "admin",
			api.HeaderRequestInfo: `{"acc":"USER_vic"}`}, "nats:@USER_vic", "", "nats:@USER_vic"},
		{"stamped, unreadable", map[string]string{api.HeaderActor: "admin",
			api.HeaderRequestInfo: `{`}, "nats:@unknown", "", "nats:@unknown"},
	}
	for _, c := range cases {
		r := req(c.h)
		if got := r.Actor(); got != c.actor {
			t.Errorf("%s: Actor %q, want %q", c.name, got, c.actor)
		}
		if got := r.Addr(); got != c.addr {
			t.Errorf("%s: Addr %q, want %q", c.name, got, c.addr)
		}
		if got := api.CallerActor(r); got != c.callActor {
			t.Errorf("%s: CallerActor %q, want %q", c.name, got, c.callActor)
		}
	}
	// The record's payload names the same caller, whatever the body says.
	r := req(map[string]string{api.HeaderSource: "spa", "Content-Type": "application/json",
		api.HeaderRequestInfo: `{"acc":"USER_vic","user":"vic"}`})
	r.Data = []byte(`{"job_id":"x","sub":"admin","source":"spa"}`)
	payload, _ := api.AuditPayload(r, "job_id")
	if got := string(payload); !strings.Contains(got, `"sub":"nats:vic"`) || !strings.Contains(got, `"source":"nats"`) || strings.Contains(got, "admin") {
		t.Errorf("payload of a stamped request: %s", got)
	}
}
