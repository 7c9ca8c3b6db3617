package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/kanade-go/kanade/services/api"
)

// Route maps one HTTP route onto one service subject.
type Route struct {
	Service   string   // micro service name, named in 503s
	Subject   string   // "kanade.results.detail"
	Method    string   // "GET"; empty matches every method
	Path      string   // "/api/results/{result_id}" (ServeMux pattern syntax)
	IntParams []string // query parameters sent as JSON numbers
	Tier      string   // least role allowed (api.TierViewer, ...); unknown = refused
	// Timeout, when set, replaces the gateway's API timeout for this
	// route (api.MetaTimeout).
	Timeout time.Duration
	// Paged: the endpoint answers its array a page at a time
	// (api.MetaPaged); a GET without the client's limit is streamed whole.
	Paged bool
}

// Pattern is the ServeMux pattern: "GET /api/results/{result_id}".
func (r Route) Pattern() string {
	if r.Method == "" {
		return r.Path
	}
	return r.Method + " " + r.Path
}

// RoutesOf is the route table the definitions declare: the fallback that
// lets a request to a stopped service still map (a quick 503 naming the
// service, not a 404). The live table comes from the services' $SRV.INFO,
// written from the same definitions.
func RoutesOf(defs []api.Definition) []Route {
	var out []Route
	for _, d := range defs {
		for _, ep := range d.Endpoints {
			if ep.HTTP == "" {
				continue
			}
			r, err := ParseRoute(d.Service, ep.Subject, ep.HTTP, strings.Join(ep.IntParams, ","))
			if err != nil {
				panic(err) // a definition is code: its test shows this
			}
			r.Tier, r.Timeout, r.Paged = ep.Tier, ep.Timeout, ep.Paged
			out = append(out, r)
		}
	}
	return out
}

// ParseRoute reads an endpoint's `http` metadata ("GET /api/x/{id}").
func ParseRoute(service, subject, http, intParams string) (Route, error) {
	r := Route{Service: service, Subject: subject}
	method, path, ok := strings.Cut(strings.TrimSpace(http), " ")
	if ok {
		r.Method, r.Path = method, strings.TrimSpace(path)
	} else {
		r.Path = method
	}
	if !isAPI(r.Path) {
		return Route{}, fmt.Errorf("route %q of %s: path must be under /api/", http, subject)
	}
	if r.Method != "" && strings.ToUpper(r.Method) != r.Method {
		return Route{}, fmt.Errorf("route %q of %s: method must be upper case", http, subject)
	}
	for _, p := range strings.Split(intParams, ",") {
		if p = strings.TrimSpace(p); p != "" {
			r.IntParams = append(r.IntParams, p)
		}
	}
	return r, nil
}

// pathParams lists the wildcard names of a ServeMux path pattern.
func pathParams(path string) []string {
	var out []string
	for _, seg := range strings.Split(path, "/") {
		if len(seg) < 3 || seg[0] != '{' || seg[len(seg)-1] != '}' {
			continue
		}
		name := strings.TrimSuffix(seg[1:len(seg)-1], "...")
		if name != "$" {
			out = append(out, name)
		}
	}
	return out
}

// Discover asks every micro service for its $SRV.INFO and returns the HTTP
// routes their endpoints declare. It waits up to maxWait for the first
// reply and then until no reply came for quiet, since the number of
// services (and instances) answering is unknown.
func Discover(ctx context.Context, nc *nats.Conn, maxWait, quiet time.Duration) ([]Route, []error, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, nil, fmt.Errorf("discover routes: subscribe: %w", err)
	}
	defer sub.Unsubscribe()
	subj, err := micro.ControlSubject(micro.InfoVerb, "", "")
	if err != nil {
		return nil, nil, fmt.Errorf("discover routes: %w", err)
	}
	if err := nc.PublishRequest(subj, inbox, nil); err != nil {
		return nil, nil, fmt.Errorf("discover routes: publish %s: %w", subj, err)
	}
	deadline := time.Now().Add(maxWait)
	var routes []Route
	var bad []error
	seen := map[string]bool{} // instance IDs: each instance of a service answers
	for {
		wait := time.Until(deadline)
		if len(seen) > 0 || len(bad) > 0 {
			wait = min(wait, quiet)
		}
		if wait <= 0 {
			return routes, bad, nil
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		m, err := sub.NextMsgWithContext(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return routes, bad, ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) {
				return routes, bad, nil // no (more) services
			}
			return routes, bad, fmt.Errorf("discover routes: %w", err)
		}
		var info micro.Info
		if err := json.Unmarshal(m.Data, &info); err != nil {
			bad = append(bad, fmt.Errorf("discover routes: bad INFO reply: %w", err))
			continue
		}
		if seen[info.ID] {
			continue
		}
		seen[info.ID] = true
		for _, ep := range info.Endpoints {
			h := ep.Metadata[api.MetaHTTP]
			if h == "" {
				continue
			}
			r, err := ParseRoute(info.Name, ep.Subject, h, ep.Metadata[api.MetaIntParams])
			if err == nil {
				r.Timeout, err = routeTimeout(ep.Metadata[api.MetaTimeout])
			}
			if err != nil {
				bad = append(bad, err)
				continue
			}
			r.Tier = ep.Metadata[api.MetaTier]
			r.Paged = ep.Metadata[api.MetaPaged] == "true"
			routes = append(routes, r)
		}
	}
}

// router holds the current route table as a ServeMux that is rebuilt, not
// edited, when the table changes: requests read it through an atomic
// pointer and never take a lock.
type router struct {
	nc       *nats.Conn
	log      *slog.Logger
	serve    func(w http.ResponseWriter, r *http.Request, ep *endpoint)
	static   []Route
	maxWait  time.Duration
	quiet    time.Duration
	table    atomic.Pointer[table]
	refresh  sync.Mutex // one discovery at a time; guards known and started
	known    map[string]Route
	started  time.Time // when the last discovery began
	warnings map[string]bool
}

type table struct {
	mux    *http.ServeMux
	routes []Route
}

// endpoint is a route with what a request needs precomputed.
type endpoint struct {
	Route
	params []string
	ints   map[string]bool
}

func newRouter(nc *nats.Conn, log *slog.Logger, static []Route, serve func(http.ResponseWriter, *http.Request, *endpoint)) *router {
	rt := &router{
		nc: nc, log: log, serve: serve, static: static,
		maxWait: 500 * time.Millisecond, quiet: 50 * time.Millisecond,
		known: map[string]Route{}, warnings: map[string]bool{},
	}
	rt.install(merge(nil, nil, static))
	return rt
}

// Routes is the table in use.
func (rt *router) Routes() []Route { return slices.Clone(rt.table.Load().routes) }

// Refresh asks the services for their routes and installs the result.
func (rt *router) Refresh(ctx context.Context) error {
	rt.refresh.Lock()
	defer rt.refresh.Unlock()
	return rt.refreshLocked(ctx)
}

// refreshSince refreshes unless a discovery began after since: callers
// that queue behind one discovery share the next, so a flood of requests
// to unknown paths costs a discovery at a time, not one each.
func (rt *router) refreshSince(ctx context.Context, since time.Time) {
	rt.refresh.Lock()
	defer rt.refresh.Unlock()
	if rt.started.After(since) {
		return
	}
	if err := rt.refreshLocked(ctx); err != nil && ctx.Err() == nil {
		rt.log.Warn("route discovery failed", "err", err)
	}
}

func (rt *router) refreshLocked(ctx context.Context) error {
	rt.started = time.Now()
	live, bad, err := Discover(ctx, rt.nc, rt.maxWait, rt.quiet)
	for _, e := range bad {
		rt.warnOnce(e.Error())
	}
	if err != nil {
		return err
	}
	claimed := map[string]string{}
	for _, r := range live {
		if s, ok := claimed[r.Pattern()]; ok && s != r.Subject {
			rt.warnOnce(fmt.Sprintf("route %s claimed by both %s and %s; one is ignored", r.Pattern(), s, r.Subject))
		}
		claimed[r.Pattern()] = r.Subject
	}
	routes := merge(live, rt.known, rt.static)
	stricter(routes, rt.static)
	rt.known = map[string]Route{}
	for _, r := range routes {
		rt.known[r.Pattern()] = r
	}
	rt.install(routes)
	return nil
}

func (rt *router) warnOnce(msg string) {
	if !rt.warnings[msg] {
		rt.warnings[msg] = true
		rt.log.Warn(msg)
	}
}

// merge builds a table: live routes first, then routes seen before (a
// stopped service keeps its routes, so it answers 503, not 404), then the
// static contract. A route whose subject is live under another path is
// dropped: the service moved it.
func merge(live []Route, known map[string]Route, static []Route) []Route {
	liveSubj := map[string]string{}
	for _, r := range live {
		liveSubj[r.Subject] = r.Pattern()
	}
	byPattern := map[string]Route{}
	add := func(r Route, fromLive bool) {
		if _, dup := byPattern[r.Pattern()]; dup {
			return
		}
		if p, ok := liveSubj[r.Subject]; ok && !fromLive && p != r.Pattern() {
			return
		}
		byPattern[r.Pattern()] = r
	}
	slices.SortFunc(live, func(a, b Route) int { return strings.Compare(a.Subject, b.Subject) })
	for _, r := range live {
		add(r, true)
	}
	for _, r := range known {
		add(r, false)
	}
	for _, r := range static {
		add(r, false)
	}
	out := make([]Route, 0, len(byPattern))
	for _, r := range byPattern {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Route) int { return strings.Compare(a.Pattern(), b.Pattern()) })
	return out
}

// stricter raises a live route's tier to its definition's when the
// definition asks more: a service cannot lower the tier its subject was
// defined with. A tier the gateway does not know stays refused.
func stricter(routes, defined []Route) {
	want := map[string]string{}
	for _, r := range defined {
		want[r.Subject] = r.Tier
	}
	for i, r := range routes {
		if d, ok := want[r.Subject]; ok && api.TierRank(r.Tier) >= 0 && api.TierRank(d) > api.TierRank(r.Tier) {
			routes[i].Tier = d
		}
	}
}

func sameRoutes(a, b []Route) bool {
	return slices.EqualFunc(a, b, func(x, y Route) bool {
		return x.Pattern() == y.Pattern() && x.Subject == y.Subject && x.Service == y.Service && x.Tier == y.Tier &&
			slices.Equal(x.IntParams, y.IntParams) && x.Timeout == y.Timeout && x.Paged == y.Paged
	})
}

// install builds and swaps in a ServeMux for routes, unless nothing changed.
func (rt *router) install(routes []Route) {
	if cur := rt.table.Load(); cur != nil && sameRoutes(cur.routes, routes) {
		return
	}
	mux := http.NewServeMux()
	var kept []Route
	for _, r := range routes {
		ep := &endpoint{Route: r, params: pathParams(r.Path), ints: map[string]bool{}}
		for _, p := range r.IntParams {
			ep.ints[p] = true
		}
		if err := handle(mux, r.Pattern(), http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { rt.serve(w, req, ep) })); err != nil {
			rt.warnOnce(fmt.Sprintf("route %s of %s skipped: %v", r.Pattern(), r.Subject, err))
			continue
		}
		kept = append(kept, r)
	}
	mux.Handle("/", http.HandlerFunc(rt.miss))
	rt.table.Store(&table{mux: mux, routes: kept})
	rt.log.Debug("routes installed", "count", len(kept))
}

// handle registers a pattern, turning ServeMux's panic on a bad or
// conflicting pattern into an error: patterns come from the services.
func handle(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

type retriedKey struct{}

// ServeHTTP dispatches an /api/* request through the current table.
func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt.table.Load().mux.ServeHTTP(w, r)
}

// miss answers a request no route matched: after a refresh it may match
// (a service started since), else 405 if the path exists under another
// method, else 404.
func (rt *router) miss(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	if r.Context().Value(retriedKey{}) == nil {
		before := rt.table.Load()
		rt.refreshSince(r.Context(), arrived)
		if rt.table.Load() != before {
			rt.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), retriedKey{}, true)))
			return
		}
	}
	mux := rt.table.Load().mux
	var allow []string
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pat := mux.Handler(probe); pat != "/" && pat != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		textError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
		return
	}
	textError(w, http.StatusNotFound, fmt.Sprintf("no API route for %s %s", r.Method, r.URL.Path))
}
