package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/services/results"
)

// testDist is a built dashboard as the dashboard build lays it out.
var testDist = fstest.MapFS{
	"index.html":              {Data: []byte("<!doctype html><title>kanade</title><script type=module src=/assets/index-3f2a9c.js></script>")},
	"assets/index-3f2a9c.js":  {Data: []byte("console.log('kanade')")},
	"assets/index-77ab01.css": {Data: []byte("body{margin:0}")},
	"favicon.svg":             {Data: []byte("<svg xmlns='http://www.w3.org/2000/svg'/>")},
}

// logs collects log records so tests can wait for one.
type logs struct {
	mu   sync.Mutex
	recs []map[string]any
	more chan struct{}
}

func newLogs() *logs { return &logs{more: make(chan struct{}, 1)} }

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logs) WithGroup(string) slog.Handler            { return l }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	m := map[string]any{"msg": r.Message, "level": r.Level.String()}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Any(); return true })
	l.mu.Lock()
	l.recs = append(l.recs, m)
	l.mu.Unlock()
	select {
	case l.more <- struct{}{}:
	default:
	}
	return nil
}

// wait returns the first record match accepts, waiting up to d.
func (l *logs) wait(t *testing.T, d time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(d)
	for {
		l.mu.Lock()
		for _, m := range l.recs {
			if match(m) {
				l.mu.Unlock()
				return m
			}
		}
		l.mu.Unlock()
		select {
		case <-l.more:
		case <-deadline:
			t.Fatalf("no matching log record within %v", d)
		}
	}
}

func startGateway(t testing.TB, n *nodetest.Node, o Options) *Gateway {
	t.Helper()
	if o.Conn == nil {
		o.Conn = n.Conn(t)
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = nodetest.Logger(t)
	}
	if o.Dashboard == nil {
		o.Dashboard = testDist
	}
	if o.Definitions == nil {
		o.Definitions = results.Definitions() // the fallback routes
	}
	g, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Shutdown(ctx)
	})
	return g
}

func startService(t *testing.T, nc *nats.Conn, s api.Service) *api.Running {
	t.Helper()
	if s.Logger == nil {
		s.Logger = nodetest.Logger(t)
	}
	r, err := api.Start(nc, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop() })
	// The server has the subscriptions once the flush returns; other
	// connections may publish to them from then on.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

// echo answers with what it received, so a test sees the mapping.
func echo(_ context.Context, r api.Request) (any, error) {
	return map[string]any{"subject": r.Subject, "body": string(r.Data), "headers": r.Header}, nil
}

type echoed struct {
	Subject string              `json:"subject"`
	Body    string              `json:"body"`
	Headers map[string][]string `json:"headers"`
}

// testService has non-contract routes, so the gateway can only know them
// from $SRV.INFO.
func testService(release <-chan struct{}, entered chan<- struct{}) api.Service {
	return api.Service{
		Name: "testsvc",
		Endpoints: []api.Endpoint{
			{Name: "get", Subject: "kanade.test.get", HTTP: "GET /api/test/{id}", Tier: api.TierViewer, IntParams: []string{"limit", "count"}, Handler: echo},
			{Name: "post", Subject: "kanade.test.post", HTTP: "POST /api/test/{id}", Tier: api.TierViewer, Handler: echo},
			{Name: "empty", Subject: "kanade.test.empty", HTTP: "POST /api/test-empty", Tier: api.TierViewer, Handler: func(context.Context, api.Request) (any, error) { return nil, nil }},
			{Name: "fail", Subject: "kanade.test.fail", HTTP: "GET /api/test-fail/{code}", Tier: api.TierViewer, Handler: func(_ context.Context, r api.Request) (any, error) {
				var p struct {
					Code string `json:"code"`
				}
				if err := api.Decode(r.Data, &p); err != nil {
					return nil, err
				}
				code, _ := strconv.Atoi(p.Code)
				return nil, api.Errorf(code, "failed with %s", p.Code)
			}},
			{Name: "slow", Subject: "kanade.test.slow", HTTP: "GET /api/test-slow", Tier: api.TierViewer, Handler: func(ctx context.Context, r api.Request) (any, error) {
				if entered != nil {
					entered <- struct{}{}
				}
				select {
				case <-release:
				case <-ctx.Done():
				}
				return map[string]bool{"done": true}, nil
			}},
		},
	}
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string, body io.Reader, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func (r response) echoed(t *testing.T) (echoed, map[string]any) {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var e echoed
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("reply %q: %v", r.body, err)
	}
	var data map[string]any
	if e.Body != "" && strings.HasPrefix(e.Body, "{") {
		if err := json.Unmarshal([]byte(e.Body), &data); err != nil {
			t.Fatalf("request body %q: %v", e.Body, err)
		}
	}
	return e, data
}

func TestRequestMapping(t *testing.T) {
	n := nodetest.Start(t)
	g := startGateway(t, n, Options{APITimeout: 300 * time.Millisecond, MaxBody: 1024})
	// Started after the gateway: the first request misses, which makes the
	// gateway read $SRV.INFO again.
	release := make(chan struct{})
	defer close(release)
	startService(t, n.Conn(t), testService(release, nil))
	u := g.URL()

	t.Run("path and query params, ints as numbers", func(t *testing.T) {
		e, data := do(t, "GET", u+"/api/test/abc?limit=5&status=failure&count=", nil).echoed(t)
		if e.Subject != "kanade.test.get" {
			t.Fatalf("subject %q", e.Subject)
		}
		want := map[string]any{"id": "abc", "limit": float64(5), "status": "failure"}
		if fmt.Sprint(data) != fmt.Sprint(want) {
			t.Fatalf("request %s, want %v", e.Body, want)
		}
		if !strings.Contains(e.Body, `"limit":5`) {
			t.Fatalf("limit not a JSON number: %s", e.Body)
		}
	})
	t.Run("path param only", func(t *testing.T) {
		e, _ := do(t, "GET", u+"/api/test/x", nil).echoed(t)
		if e.Body != `{"id":"x"}` {
			t.Fatalf("body %q", e.Body)
		}
	})
	t.Run("int param not an integer is 400", func(t *testing.T) {
		r := do(t, "GET", u+"/api/test/abc?limit=ten", nil)
		if r.status != 400 || !strings.Contains(r.body, "limit") {
			t.Fatalf("%d %q", r.status, r.body)
		}
	})
	t.Run("JSON and YAML bodies pass verbatim, params in headers only", func(t *testing.T) {
		for _, c := range []struct{ body, ctype string }{
			{`{"target":{"pcs":["PC1"]},"jitter":"5m","id":"spoofed","n":12345678901234567890}`, "application/json"},
			{"id: backup\nscript: echo hi\n", "application/yaml"},
			{`{"id":"x"}`, ""},
		} {
			e, _ := do(t, "POST", u+"/api/test/abc?dry=1&limit=5", strings.NewReader(c.body), "Content-Type", c.ctype).echoed(t)
			if e.Body != c.body {
				t.Fatalf("body %q, want %q verbatim", e.Body, c.body)
			}
			if got := e.Headers["Content-Type"]; c.ctype != "" && !slices.Equal(got, []string{c.ctype}) {
				t.Fatalf("content type header %v, want %s", got, c.ctype)
			}
			for k, want := range map[string]string{"id": "abc", "dry": "1", "limit": "5"} {
				if got := e.Headers[api.ParamHeaderPrefix+k]; !slices.Equal(got, []string{want}) {
					t.Fatalf("%s: param header %s = %v, want %s (all %v)", c.ctype, k, got, want, e.Headers)
				}
			}
		}
	})
	t.Run("a blank body is no body", func(t *testing.T) {
		e, _ := do(t, "POST", u+"/api/test/abc?dry=1", strings.NewReader(" \n")).echoed(t)
		if e.Body != `{"dry":"1","id":"abc"}` || len(e.Headers) != 2 || e.Headers[api.HeaderActor][0] != LoopbackUser {
			t.Fatalf("body %q headers %v", e.Body, e.Headers)
		}
	})
	t.Run("service errors keep their status and text", func(t *testing.T) {
		for _, code := range []int{400, 404, 409, 503} {
			r := do(t, "GET", u+fmt.Sprintf("/api/test-fail/%d", code), nil)
			if r.status != code || r.body != fmt.Sprintf("failed with %d", code) || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
				t.Fatalf("code %d: got %d %q %q", code, r.status, r.body, r.header.Get("Content-Type"))
			}
		}
		r := do(t, "GET", u+"/api/test-fail/200", nil)
		if r.status != 502 {
			t.Fatalf("non-error code: %d %q", r.status, r.body)
		}
	})
	t.Run("empty reply is 204", func(t *testing.T) {
		r := do(t, "POST", u+"/api/test-empty", nil)
		if r.status != 204 || r.body != "" {
			t.Fatalf("%d %q", r.status, r.body)
		}
	})
	t.Run("timeout is 504", func(t *testing.T) {
		r := do(t, "GET", u+"/api/test-slow", nil)
		if r.status != 504 || !strings.Contains(r.body, "testsvc") {
			t.Fatalf("%d %q", r.status, r.body)
		}
	})
	t.Run("unknown API path is 404, wrong method 405", func(t *testing.T) {
		r := do(t, "GET", u+"/api/nothing/here", nil)
		if r.status != 404 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
			t.Fatalf("%d %q", r.status, r.body)
		}
		r = do(t, "PUT", u+"/api/test/abc", strings.NewReader("{}"))
		if r.status != 405 || !strings.Contains(r.header.Get("Allow"), "POST") {
			t.Fatalf("%d %q allow %q", r.status, r.body, r.header.Get("Allow"))
		}
	})
	t.Run("body over the limit is 413", func(t *testing.T) {
		big := `{"x":"` + strings.Repeat("a", 2000) + `"}`
		r := do(t, "POST", u+"/api/test/abc", strings.NewReader(big), "Content-Type", "application/json")
		if r.status != 413 {
			t.Fatalf("with length: %d %q", r.status, r.body)
		}
		// Without a Content-Length (chunked), the limit holds while reading.
		r = do(t, "POST", u+"/api/test/abc", io.MultiReader(strings.NewReader(big)), "Content-Type", "application/json")
		if r.status != 413 {
			t.Fatalf("chunked: %d %q", r.status, r.body)
		}
	})
	t.Run("route table has the contract and the discovered routes", func(t *testing.T) {
		var pats []string
		for _, r := range g.Routes() {
			pats = append(pats, r.Pattern())
		}
		for _, want := range []string{"GET /api/test/{id}", "GET /api/results/{result_id}", "POST /api/jobs/{job_id}/kill"} {
			if !slices.Contains(pats, want) {
				t.Errorf("route %s missing from %v", want, pats)
			}
		}
	})
}

func TestStoppedService(t *testing.T) {
	n := nodetest.Start(t)
	g := startGateway(t, n, Options{APITimeout: time.Minute})
	// A contract route with nothing behind it: the static table maps it,
	// NATS has no responders, and the answer comes at once, not after the
	// minute-long API timeout (the client gives up after 30 s).
	r := do(t, "GET", g.URL()+"/api/results/abc", nil)
	if r.status != 503 || !strings.Contains(r.body, "results") {
		t.Fatalf("%d %q", r.status, r.body)
	}
	// A discovered route whose service stops keeps its route: 503, not 404.
	svc := startService(t, n.Conn(t), testService(nil, nil))
	if err := g.RefreshRoutes(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "POST", g.URL()+"/api/test-empty", nil); r.status != 204 {
		t.Fatalf("running: %d %q", r.status, r.body)
	}
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := g.RefreshRoutes(context.Background()); err != nil {
		t.Fatal(err)
	}
	r = do(t, "POST", g.URL()+"/api/test-empty", nil)
	if r.status != 503 || !strings.Contains(r.body, "testsvc") {
		t.Fatalf("stopped: %d %q", r.status, r.body)
	}
}

func TestClientGoneCancelsRequest(t *testing.T) {
	n := nodetest.Start(t)
	lg := newLogs()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	startService(t, n.Conn(t), testService(release, entered))
	g := startGateway(t, n, Options{APITimeout: time.Minute, Logger: slog.New(lg)})
	defer close(release)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", g.URL()+"/api/test-slow", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("request never reached the service")
	}
	cancel()
	<-errc
	// The service is still holding the request; the gateway stopped
	// waiting for it when the client left.
	lg.wait(t, 20*time.Second, func(m map[string]any) bool {
		return m["msg"] == "http" && m["path"] == "/api/test-slow" && m["status"] == int64(statusClientClosed)
	})
}

func TestCORS(t *testing.T) {
	n := nodetest.Start(t)
	g := startGateway(t, n, Options{CORSOrigins: []string{"https://ops.example.com"}, APIToken: "s3cret"})
	preflight := func(origin string) response {
		return do(t, "OPTIONS", g.URL()+"/api/jobs", nil,
			"Origin", origin, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type")
	}
	r := preflight("https://ops.example.com")
	if r.status >= 300 || r.header.Get("Access-Control-Allow-Origin") != "https://ops.example.com" ||
		!strings.Contains(strings.ToLower(r.header.Get("Access-Control-Allow-Headers")), "authorization") ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("allowed preflight: %d %v", r.status, r.header)
	}
	r = preflight("https://evil.example.com")
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("refused preflight still allows: %v", r.header)
	}
	// The actual request carries the header too (and still needs the token).
	r = do(t, "GET", g.URL()+"/api/version", nil, "Origin", "https://ops.example.com")
	if r.header.Get("Access-Control-Allow-Origin") != "https://ops.example.com" {
		t.Fatalf("simple request: %v", r.header)
	}

	off := startGateway(t, n, Options{})
	r = do(t, "OPTIONS", off.URL()+"/api/jobs", nil, "Origin", "https://ops.example.com", "Access-Control-Request-Method", "POST")
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS off by default, got %v", r.header)
	}
}

func TestToken(t *testing.T) {
	n := nodetest.Start(t)
	startService(t, n.Conn(t), testService(nil, nil))
	g := startGateway(t, n, Options{APIToken: "s3cret"})
	u := g.URL()
	for _, c := range []struct {
		name, path, auth string
		want             int
	}{
		{"no token", "/api/test/x", "", 401},
		{"wrong token", "/api/test/x", "Bearer s3cre", 401},
		{"wrong scheme", "/api/test/x", "Basic s3cret", 401},
		{"unknown API path still guarded", "/api/nothing", "", 401},
		{"dot segments redirect, then meet the token", "/assets/../api/test/x", "", 307},
		{"nor do escapes", "/%61pi/test/x", "", 401},
		{"right token", "/api/test/x", "Bearer s3cret", 200},
		{"version is public", "/api/version", "", 200},
		{"health is public", "/health", "", 200},
		{"dashboard is public", "/", "", 200},
		{"assets are public", "/assets/index-3f2a9c.js", "", 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			var hdr []string
			if c.auth != "" {
				hdr = []string{"Authorization", c.auth}
			}
			r := do(t, "GET", u+c.path, nil, hdr...)
			if r.status != c.want {
				t.Fatalf("%s: %d %q", c.path, r.status, r.body)
			}
			if c.want == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("401 without WWW-Authenticate: %v", r.header)
			}
		})
	}
}

func TestDashboard(t *testing.T) {
	n := nodetest.Start(t)
	g := startGateway(t, n, Options{})
	u := g.URL()
	index := string(testDist["index.html"].Data)
	for _, c := range []struct {
		path, body, cache, ctype string
		status                   int
	}{
		{"/", index, cacheNone, "text/html", 200},
		{"/results/8f1c", index, cacheNone, "text/html", 200},
		{"/schedules/nightly/edit", index, cacheNone, "text/html", 200},
		{"/index.html", index, cacheNone, "text/html", 200},
		{"/assets/index-3f2a9c.js", "console.log('kanade')", cacheImmutable, "text/javascript", 200},
		{"/assets/index-77ab01.css", "body{margin:0}", cacheImmutable, "text/css", 200},
		{"/assets/index-000000.js", "not found", "", "text/plain", 404},
		{"/assets/", "not found", "", "text/plain", 404},
		{"/assets", "not found", "", "text/plain", 404},
		{"/favicon.svg", string(testDist["favicon.svg"].Data), cacheNone, "image/svg+xml", 200},
	} {
		r := do(t, "GET", u+c.path, nil)
		if r.status != c.status || (c.body != "" && r.body != c.body) {
			t.Errorf("%s: %d %q, want %d %q", c.path, r.status, r.body, c.status, c.body)
			continue
		}
		if r.header.Get("Cache-Control") != c.cache && c.status == 200 {
			t.Errorf("%s: Cache-Control %q, want %q", c.path, r.header.Get("Cache-Control"), c.cache)
		}
		if !strings.HasPrefix(r.header.Get("Content-Type"), c.ctype) {
			t.Errorf("%s: Content-Type %q, want %q", c.path, r.header.Get("Content-Type"), c.ctype)
		}
	}
	// index.html revalidates cheaply.
	first := do(t, "GET", u+"/", nil)
	if r := do(t, "GET", u+"/", nil, "If-None-Match", first.header.Get("ETag")); r.status != 304 {
		t.Fatalf("revalidation: %d", r.status)
	}
	if r := do(t, "POST", u+"/", strings.NewReader("x")); r.status != 405 {
		t.Fatalf("POST /: %d", r.status)
	}
	// The real embedded dist has an index.html.
	real, err := Start(Options{Conn: n.Conn(t), Addr: "127.0.0.1:0", Logger: nodetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer real.Shutdown(context.Background())
	if r := do(t, "GET", real.URL()+"/some/route", nil); r.status != 200 || !strings.Contains(r.body, "<html") {
		t.Fatalf("embedded dist: %d %q", r.status, r.body)
	}
}

func TestSecurityHeadersEverywhere(t *testing.T) {
	n := nodetest.Start(t)
	g := startGateway(t, n, Options{})
	for _, p := range []string{"/", "/health", "/api/version", "/api/nothing", "/api/results/x", "/assets/nope.js", "/assets/index-3f2a9c.js"} {
		r := do(t, "GET", g.URL()+p, nil)
		for k, want := range map[string]string{
			"X-Content-Type-Options":  "nosniff",
			"X-Frame-Options":         "DENY",
			"Content-Security-Policy": ContentSecurityPolicy,
			"Referrer-Policy":         "no-referrer",
		} {
			if got := r.header.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", p, k, got, want)
			}
		}
	}
}

func TestAccessLogAndBindWarning(t *testing.T) {
	n := nodetest.Start(t)
	lg := newLogs()
	g := startGateway(t, n, Options{Addr: "0.0.0.0:0", Logger: slog.New(lg)})
	lg.wait(t, time.Second, func(m map[string]any) bool {
		return m["level"] == "WARN" && strings.Contains(m["msg"].(string), "without a token")
	})
	port := g.URL()[strings.LastIndex(g.URL(), ":"):]
	do(t, "GET", "http://127.0.0.1"+port+"/api/version", nil)
	m := lg.wait(t, 10*time.Second, func(m map[string]any) bool { return m["msg"] == "http" && m["path"] == "/api/version" })
	if m["method"] != "GET" || m["status"] != int64(200) || m["bytes"].(int64) == 0 {
		t.Fatalf("access log %v", m)
	}
	if _, ok := m["duration"].(time.Duration); !ok {
		t.Fatalf("no duration in %v", m)
	}

	quiet := newLogs()
	startGateway(t, n, Options{Addr: "127.0.0.1:0", Logger: slog.New(quiet)})
	startGateway(t, n, Options{Addr: "0.0.0.0:0", APIToken: "t", Logger: slog.New(quiet)})
	quiet.mu.Lock()
	defer quiet.mu.Unlock()
	for _, m := range quiet.recs {
		if m["level"] == "WARN" {
			t.Fatalf("warning without cause: %v", m)
		}
	}
}

func TestMergeRoutes(t *testing.T) {
	static := []Route{
		{Service: "agents", Subject: "kanade.agents.list", Method: "GET", Path: "/api/agents"},
		{Service: "results", Subject: "kanade.results.list", Method: "GET", Path: "/api/results"},
	}
	live := []Route{{Service: "agents", Subject: "kanade.agents.list", Method: "GET", Path: "/api/v2/agents"}}
	got := merge(live, nil, static)
	var pats []string
	for _, r := range got {
		pats = append(pats, r.Pattern())
	}
	// The live route replaces the contract's for the same subject; the
	// rest of the contract stays.
	if !slices.Equal(pats, []string{"GET /api/results", "GET /api/v2/agents"}) {
		t.Fatalf("%v", pats)
	}
	if _, err := ParseRoute("x", "kanade.x", "GET /health", ""); err == nil {
		t.Fatal("a service may not claim a route outside /api/")
	}
	if p := pathParams("/api/a/{x}/b/{rest...}/{$}"); !slices.Equal(p, []string{"x", "rest"}) {
		t.Fatalf("params %v", p)
	}
}

func TestDiscover(t *testing.T) {
	n := nodetest.Start(t)
	nc := n.Conn(t)
	if routes, bad, err := Discover(context.Background(), nc, 2*time.Second, 50*time.Millisecond); err != nil || len(routes)+len(bad) != 0 {
		t.Fatalf("no services: %v %v %v", routes, bad, err)
	}
	// Two instances of one service, and a service claiming a path outside /api/.
	startService(t, n.Conn(t), testService(nil, nil))
	startService(t, n.Conn(t), testService(nil, nil))
	startService(t, n.Conn(t), api.Service{Name: "rogue", Endpoints: []api.Endpoint{
		{Name: "h", Subject: "kanade.rogue.h", HTTP: "GET /health", Tier: api.TierViewer, Handler: echo},
	}})
	routes, bad, err := Discover(context.Background(), nc, 2*time.Second, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 1 || !strings.Contains(bad[0].Error(), "/health") {
		t.Fatalf("bad routes %v (routes %d)", bad, len(routes))
	}
	got := map[string]Route{}
	for _, r := range merge(routes, nil, nil) {
		got[r.Pattern()] = r
	}
	want := testService(nil, nil).Endpoints
	if len(got) != len(want) {
		t.Fatalf("routes %v, want %d", got, len(want))
	}
	for _, ep := range want {
		r, ok := got[ep.HTTP]
		if !ok || r.Subject != ep.Subject || r.Service != "testsvc" || !slices.Equal(r.IntParams, ep.IntParams) {
			t.Errorf("%s: got %+v", ep.HTTP, r)
		}
	}
}

// TestEmbeddedDashboard serves the real build: every asset index.html
// names is served, cached for good, with its type; and index.html has
// nothing inline that the content security policy would block.
func TestEmbeddedDashboard(t *testing.T) {
	n := nodetest.Start(t)
	g, err := Start(Options{Conn: n.Conn(t), Addr: "127.0.0.1:0", Logger: nodetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	index := do(t, "GET", g.URL()+"/", nil)
	if index.status != 200 || index.header.Get("Cache-Control") != cacheNone {
		t.Fatalf("index: %d %v", index.status, index.header)
	}
	inline := regexp.MustCompile(`(?i)<script(\s+type="module")?\s*>|<style|\sstyle=|\son[a-z]+=`)
	if m := inline.FindString(index.body); m != "" {
		t.Fatalf("index.html has inline code the CSP blocks: %q", m)
	}
	assets := regexp.MustCompile(`"(/assets/[^"]+)"`).FindAllStringSubmatch(index.body, -1)
	if len(assets) == 0 {
		t.Skip("the embedded dist is a placeholder without assets")
	}
	types := map[string]string{".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
	for _, a := range assets {
		r := do(t, "GET", g.URL()+a[1], nil)
		if r.status != 200 || r.header.Get("Cache-Control") != cacheImmutable {
			t.Errorf("%s: %d %q", a[1], r.status, r.header.Get("Cache-Control"))
		}
		if want, ok := types[path.Ext(a[1])]; ok && !strings.HasPrefix(r.header.Get("Content-Type"), want) {
			t.Errorf("%s: Content-Type %q, want %s", a[1], r.header.Get("Content-Type"), want)
		}
	}
}
