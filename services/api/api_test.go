package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
)

type params struct {
	Limit int    `json:"limit"`
	Name  string `json:"name"`
}

func TestDecode(t *testing.T) {
	var p params
	if err := api.Decode(nil, &p); err != nil || p.Limit != 0 {
		t.Fatalf("empty body: %v", err)
	}
	// Unknown keys are ignored, as upstream; known ones keep their types.
	if err := api.Decode([]byte(`{"limit":3,"_":"123","nope":{"x":[1]}}`), &p); err != nil || p.Limit != 3 {
		t.Fatalf("unknown keys: %+v %v", p, err)
	}
	cases := map[string]string{
		`{"limit":"x"}`:          "parameter limit: must be an integer",
		`{"limit":"x","nope":1}`: "parameter limit: must be an integer",
		`not json`:               "not valid JSON",
		`{"limit":1} {}`:         "one JSON object",
		`{"name":[1]}`:           "parameter name: must be a string",
		`[1,2]`:                  "request body: must be a JSON object of parameters",
		` null`:                  "request body: must be a JSON object of parameters",
	}
	for body, want := range cases {
		err := api.Decode([]byte(body), &p)
		var e *api.Error
		if !errors.As(err, &e) || e.Status != 400 || !strings.Contains(e.Message, want) {
			t.Errorf("%s: got %v, want 400 containing %q", body, err, want)
		}
	}
}

func TestServiceAnswersAndMapsErrors(t *testing.T) {
	n := nodetest.Start(t)
	nc := n.Conn(t)
	release := make(chan struct{})
	var logged lockedBuffer
	svc, err := api.Start(nc, api.Service{
		Name: "apitest", Workers: 4, Logger: slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Endpoints: []api.Endpoint{
			{Name: "echo", Subject: "kanade.apitest.echo", HTTP: "GET /api/echo", IntParams: []string{"limit"},
				Handler: func(ctx context.Context, r api.Request) (any, error) {
					var p params
					if err := api.Params(r, &p); err != nil {
						return nil, err
					}
					return p, nil
				}},
			{Name: "empty", Subject: "kanade.apitest.empty", Handler: func(context.Context, api.Request) (any, error) { return nil, nil }},
			{Name: "missing", Subject: "kanade.apitest.missing", Handler: func(context.Context, api.Request) (any, error) {
				return nil, api.NotFound("no such thing")
			}},
			{Name: "broken", Subject: "kanade.apitest.broken", Handler: func(context.Context, api.Request) (any, error) {
				return nil, errors.New("secret detail")
			}},
			{Name: "slow", Subject: "kanade.apitest.slow", Handler: func(ctx context.Context, _ api.Request) (any, error) {
				<-release
				return "done", nil
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()

	client := n.Conn(t)
	req := func(subj, body string) *nats.Msg {
		t.Helper()
		m, err := client.Request(subj, []byte(body), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", subj, err)
		}
		return m
	}
	if m := req("kanade.apitest.echo", `{"limit":3,"name":"x"}`); string(m.Data) != `{"limit":3,"name":"x"}` {
		t.Errorf("echo: %s", m.Data)
	}
	// An unknown key is ignored, and logged at debug level.
	if m := req("kanade.apitest.echo", `{"limit":2,"_":"1700000000","cascade":"true"}`); string(m.Data) != `{"limit":2,"name":""}` {
		t.Errorf("echo with unknown keys: %s", m.Data)
	}
	if !strings.Contains(logged.String(), `msg="unknown parameters ignored"`) || !strings.Contains(logged.String(), "params=\"[_ cascade]\"") {
		t.Errorf("unknown keys not logged at debug level:\n%s", logged.String())
	}
	if m := req("kanade.apitest.empty", ``); len(m.Data) != 0 || m.Header.Get(micro.ErrorCodeHeader) != "" {
		t.Errorf("empty: %q %v", m.Data, m.Header)
	}
	for subj, want := range map[string][2]string{
		"kanade.apitest.missing": {"404", "no such thing"},
		"kanade.apitest.broken":  {"500", "internal error"},
	} {
		m := req(subj, `{"x":1}`)
		if m.Header.Get(micro.ErrorCodeHeader) != want[0] || !strings.Contains(string(m.Data), want[1]) {
			t.Errorf("%s: %v %q", subj, m.Header, m.Data)
		}
		if strings.Contains(string(m.Data), "secret") {
			t.Errorf("%s leaked an internal error: %s", subj, m.Data)
		}
	}

	// Parameters in headers (the gateway passing a body through) come
	// last and win; a JSON body is read too, any other body is not.
	hreq := func(body string, hdr nats.Header) *nats.Msg {
		t.Helper()
		m, err := client.RequestMsg(&nats.Msg{Subject: "kanade.apitest.echo", Data: []byte(body), Header: hdr}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, c := range []struct {
		body string
		hdr  nats.Header
		want string
	}{
		{`{"limit":1,"name":"body"}`, nats.Header{api.ParamHeaderPrefix + "name": {"path"}, api.ParamHeaderPrefix + "limit": {"7"}}, `{"limit":7,"name":"path"}`},
		{`{"limit":1}`, nats.Header{"kanade-param-name": {"123"}, api.ParamHeaderPrefix + "dry_run": {"1"}}, `{"limit":1,"name":"123"}`},
		{"name: yaml\nlimit: 9\n", nats.Header{"Content-Type": {"application/yaml"}, api.ParamHeaderPrefix + "name": {"path"}}, `{"limit":0,"name":"path"}`},
		{``, nats.Header{api.ParamHeaderPrefix + "limit": {"ten"}}, "parameter limit: must be an integer"},
		{`{"limit":"x"}`, nats.Header{api.ParamHeaderPrefix + "name": {"n"}}, "parameter limit: must be an integer"},
	} {
		if m := hreq(c.body, c.hdr); string(m.Data) != c.want {
			t.Errorf("%q with %v: %s, want %s", c.body, c.hdr, m.Data, c.want)
		}
	}

	// Slow requests in flight do not hold up others (bounded pool).
	for i := 0; i < 2; i++ {
		if err := client.PublishRequest("kanade.apitest.slow", nats.NewInbox(), nil); err != nil {
			t.Fatal(err)
		}
	}
	client.Flush()
	if m := req("kanade.apitest.echo", `{"limit":1}`); !strings.Contains(string(m.Data), `"limit":1`) {
		t.Errorf("echo behind slow requests: %s", m.Data)
	}
	close(release)

	// The route metadata is what the gateway reads.
	var found bool
	for _, ep := range svc.Info().Endpoints {
		if ep.Name == "echo" {
			found = ep.Metadata[api.MetaHTTP] == "GET /api/echo" && ep.Metadata[api.MetaIntParams] == "limit"
		}
	}
	if !found {
		b, _ := json.Marshal(svc.Info())
		t.Errorf("metadata missing: %s", b)
	}
}

// lockedBuffer is a log sink safe for the service's worker goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A reply over the connection's max_payload answers an error naming the
// limit at once, instead of being dropped while the caller waits; small
// replies of the same endpoint still pass, and "<" is not HTML-escaped.
func TestReplyOverMaxPayloadAnswersError(t *testing.T) {
	n := nodetest.Start(t)
	nc := n.Conn(t)
	max := int(nc.MaxPayload())
	svc, err := api.Start(nc, api.Service{
		Name: "sizetest", Workers: 2, Logger: nodetest.Logger(t),
		Endpoints: []api.Endpoint{{Name: "big", Subject: "kanade.sizetest.big", Tier: api.TierViewer,
			Handler: func(ctx context.Context, r api.Request) (any, error) {
				var p params
				if err := api.Params(r, &p); err != nil {
					return nil, err
				}
				return map[string]string{"out": strings.Repeat("<", p.Limit)}, nil
			}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	client := n.Conn(t)
	start := time.Now()
	m, err := client.Request("kanade.sizetest.big", fmt.Appendf(nil, `{"limit":%d}`, max), 5*time.Second)
	if err != nil {
		t.Fatalf("over max_payload: %v after %v (want an error reply, not a timeout)", err, time.Since(start))
	}
	want := fmt.Sprintf("over the NATS max_payload of %d bytes", max)
	if m.Header.Get(micro.ErrorCodeHeader) != "500" || !strings.Contains(string(m.Data), want) || !strings.Contains(string(m.Data), "ask for less") {
		t.Fatalf("over max_payload: %v %q", m.Header, m.Data)
	}
	// Just under the limit: sent whole, one byte per "<".
	fits := max - len(`{"out":""}`)
	m, err = client.Request("kanade.sizetest.big", fmt.Appendf(nil, `{"limit":%d}`, fits), 5*time.Second)
	if err != nil || m.Header.Get(micro.ErrorCodeHeader) != "" || len(m.Data) != max {
		t.Fatalf("at max_payload: %v, %d bytes %v", err, len(m.Data), m.Header)
	}
	// A request is counted once its reply is sent, just after the caller
	// may have read it.
	st := waitRequests(t, func() micro.Stats { return svc.Stats() }, 2)
	if st.NumRequests != 2 || st.NumErrors != 1 || !strings.HasPrefix(st.LastError, "500:reply too large") {
		t.Fatalf("stats: %+v", st)
	}
}

// micro stats, as `nats micro stats` reads them from $SRV.STATS, time the
// whole handling (not the hand-off to the pool) and count every error
// reply with its text.
func TestMicroStatsTimeHandlingAndCountErrors(t *testing.T) {
	n := nodetest.Start(t)
	nc := n.Conn(t)
	var mu sync.Mutex
	var handled time.Duration // summed inside the handler
	svc, err := api.Start(nc, api.Service{
		Name: "statstest", Workers: 4, Logger: nodetest.Logger(t),
		Endpoints: []api.Endpoint{{Name: "work", Subject: "kanade.statstest.work", Tier: api.TierViewer,
			Handler: func(ctx context.Context, r api.Request) (any, error) {
				t0 := time.Now()
				defer func() { mu.Lock(); handled += time.Since(t0); mu.Unlock() }()
				var p params
				if err := api.Params(r, &p); err != nil {
					return nil, err
				}
				time.Sleep(time.Duration(p.Limit) * time.Millisecond) // the work being timed
				if p.Name == "fail" {
					return nil, api.NotFound("no such %s", "thing")
				}
				return p, nil
			}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	client := n.Conn(t)
	const good, failed = 5, 3
	var roundTrips time.Duration // each request's processing fits in its round trip
	for i := range good + failed {
		body := `{"limit":20}`
		if i >= good {
			body = `{"limit":20,"name":"fail"}`
		}
		t0 := time.Now()
		if _, err := client.Request("kanade.statstest.work", []byte(body), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		roundTrips += time.Since(t0)
	}
	// Bad parameters are error replies too.
	if m, err := client.Request("kanade.statstest.work", []byte(`{"limit":"x"}`), 5*time.Second); err != nil || m.Header.Get(micro.ErrorCodeHeader) != "400" {
		t.Fatalf("bad params: %v %v", err, m)
	}

	subj, _ := micro.ControlSubject(micro.StatsVerb, "statstest", "")
	var stats micro.Stats
	st := waitRequests(t, func() micro.Stats {
		m, err := client.Request(subj, nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		stats = micro.Stats{}
		if err := json.Unmarshal(m.Data, &stats); err != nil || stats.Type != micro.StatsResponseType || stats.Name != "statstest" || len(stats.Endpoints) != 1 {
			t.Fatalf("$SRV.STATS: %v %s", err, m.Data)
		}
		return stats
	}, good+failed+1)
	if st.NumRequests != good+failed+1 || st.NumErrors != failed+1 || !strings.HasPrefix(st.LastError, "400:parameter limit") {
		t.Errorf("counts: requests %d errors %d last %q", st.NumRequests, st.NumErrors, st.LastError)
	}
	mu.Lock()
	h := handled
	mu.Unlock()
	if st.ProcessingTime < h || st.ProcessingTime < (good+failed)*20*time.Millisecond {
		t.Errorf("processing time %v under the handler's own %v", st.ProcessingTime, h)
	}
	if st.ProcessingTime > roundTrips+time.Second { // + the bad-params request
		t.Errorf("processing time %v over the requests' round trips %v", st.ProcessingTime, roundTrips)
	}
	if st.AverageProcessingTime != st.ProcessingTime/time.Duration(st.NumRequests) {
		t.Errorf("average %v of %v over %d", st.AverageProcessingTime, st.ProcessingTime, st.NumRequests)
	}

	// The other control subjects answer as micro's do, by kind and by id.
	for _, verb := range []micro.Verb{micro.PingVerb, micro.InfoVerb} {
		subj, _ := micro.ControlSubject(verb, "statstest", stats.ID)
		m, err := client.Request(subj, nil, 5*time.Second)
		var id micro.ServiceIdentity
		if err != nil || json.Unmarshal(m.Data, &id) != nil || id.ID != stats.ID || id.Version != api.Version {
			t.Errorf("%s: %v %s", subj, err, m.Data)
		}
	}
}

// waitRequests polls stats until the first endpoint counted n requests
// (each is counted once its reply is sent) and returns its stats.
func waitRequests(t *testing.T, stats func() micro.Stats, n int) *micro.EndpointStats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := stats().Endpoints[0]
		if st.NumRequests >= n || time.Now().After(deadline) {
			return st
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A caller names the reply subject and NATS never checks it against the
// caller's permissions: a service that answered "$KV.agent_groups.PC2"
// would write that key with its own rights. Only inboxes get an answer.
func TestAnswersOnlyInboxes(t *testing.T) {
	n := nodetest.Start(t)
	nc := n.Conn(t)
	svc, err := api.Start(nc, api.Service{
		Name: "replytest",
		Endpoints: []api.Endpoint{{Name: "get", Subject: "kanade.replytest.get", Tier: api.TierViewer,
			Handler: func(context.Context, api.Request) (any, error) { return map[string]string{"ok": "yes"}, nil }}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	client := n.Conn(t)
	if _, err := client.Request("kanade.replytest.get", nil, 5*time.Second); err != nil {
		t.Fatalf("an inbox reply is answered: %v", err)
	}
	watch, err := client.SubscribeSync("$KV.agent_groups.>")
	if err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"kanade.replytest.get", "$SRV.INFO"} {
		if err := client.PublishRequest(subj, "$KV.agent_groups.PC2", nil); err != nil {
			t.Fatal(err)
		}
	}
	// A round trip after the two requests: had they been answered, the
	// answers would be on their way before this one.
	if _, err := client.Request("kanade.replytest.get", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if m, err := watch.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("answered on %s: %q", m.Subject, m.Data)
	}
	if api.ReplySubjectAllowed("commands.pc.PC2") || !api.ReplySubjectAllowed("_INBOX.abc.1") || !api.ReplySubjectAllowed("_R_.x.y") {
		t.Fatal("ReplySubjectAllowed")
	}
}
