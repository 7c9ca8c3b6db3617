// Package gateway is kanade's HTTP front: it turns /api/* requests into NATS
// requests to the micro services and serves the embedded dashboard. It keeps
// no state, so any number of gateways can stand in front of one NATS.
//
// The route table comes from the services themselves: each endpoint names
// its HTTP route in its micro metadata, and the gateway reads them from
// $SRV.INFO, so a new endpoint needs no gateway change. The contract's
// routes are also built in, so a request to a stopped service still maps
// and gets a quick 503 naming the service.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/web"
)

// Options configure the gateway.
type Options struct {
	Conn   *nats.Conn
	Addr   string // "127.0.0.1:8080"; port 0 picks a free port
	Logger *slog.Logger

	// APITimeout bounds each NATS request (default 10 s); past it, 504.
	APITimeout time.Duration
	// APIToken is a static bearer token that acts as an admin (upstream's
	// service token). Without accounts it is required on every /api/*
	// route but the public ones.
	APIToken string
	// Accounts makes the gateway check bearer tokens with the accounts
	// service (SubjectAuthVerify): once an account exists every /api/*
	// route but the public ones needs a token. Without accounts, and with
	// no APIToken, the API is open to loopback clients only.
	Accounts bool
	// Definitions are the services' endpoint definitions: the fallback
	// routes, so that a request to a stopped service still maps and gets a
	// quick 503 naming it instead of a 404.
	Definitions []api.Definition
	// CORSOrigins are the browser origins allowed to call the API from
	// elsewhere; none (the default) sends no CORS headers.
	CORSOrigins []string
	// MaxBody limits a request body (default 1 MiB); past it, 413.
	MaxBody int64
	// Dashboard is the built dashboard (default web.Dist()).
	Dashboard fs.FS
	// RouteRefresh is how often the routes are read again from the
	// services (default 30 s); a request to an unknown /api path also
	// triggers a refresh.
	RouteRefresh time.Duration
}

// Gateway is a running HTTP server.
type Gateway struct {
	srv    *http.Server
	ln     net.Listener
	log    *slog.Logger
	o      Options
	router *router
	auth   *authenticator
	// metrics is GET /metrics (metrics.go).
	metrics *metrics
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// Start listens on o.Addr and serves until Shutdown.
func Start(o Options) (*Gateway, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Conn == nil {
		return nil, errors.New("gateway: no NATS connection")
	}
	switch {
	case o.APITimeout < 0:
		return nil, fmt.Errorf("gateway: api timeout %v is negative", o.APITimeout)
	case o.APITimeout == 0:
		o.APITimeout = 10 * time.Second
	}
	switch {
	case o.MaxBody < 0:
		return nil, fmt.Errorf("gateway: max body %d is negative", o.MaxBody)
	case o.MaxBody == 0:
		o.MaxBody = 1 << 20
	}
	if o.RouteRefresh <= 0 {
		o.RouteRefresh = 30 * time.Second
	}
	if o.Dashboard == nil {
		o.Dashboard = web.Dist()
	}
	dash, err := newDashboard(o.Dashboard)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	log := o.Logger.With("component", "gateway")
	g := &Gateway{log: log, o: o, auth: newAuthenticator(o, log)}
	g.metrics = newMetrics(o.Conn, 5*time.Second)
	g.router = newRouter(o.Conn, log, RoutesOf(o.Definitions), g.metrics.instrument(g.serveEndpoint))

	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: listen %s: %w", o.Addr, err)
	}
	g.ln = ln
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && !ta.IP.IsLoopback() && o.APIToken == "" && !o.Accounts {
		log.Warn("the HTTP API listens on a non-loopback address without a token: anyone who can reach "+
			ln.Addr().String()+" can create jobs and run them on every agent; set --api-token (KANADE_API_TOKEN) "+
			"or bind 127.0.0.1", "addr", ln.Addr().String())
	}
	g.srv = &http.Server{
		Handler:           g.handler(dash),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Long enough for a 504 to be written after the API timeout.
		WriteTimeout:   max(60*time.Second, o.APITimeout+10*time.Second),
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}

	ctx, cancel := context.WithCancel(context.Background())
	g.stop = cancel
	g.wg.Add(2)
	go func() {
		defer g.wg.Done()
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	go func() {
		defer g.wg.Done()
		g.refreshLoop(ctx)
	}()
	return g, nil
}

// URL is the address actually bound, as http://host:port.
func (g *Gateway) URL() string { return "http://" + g.ln.Addr().String() }

// Routes is the route table in use.
func (g *Gateway) Routes() []Route { return g.router.Routes() }

// RefreshRoutes reads the routes from the services now.
func (g *Gateway) RefreshRoutes(ctx context.Context) error { return g.router.Refresh(ctx) }

// Shutdown stops accepting requests, waits for those in flight, then stops
// the route refresher.
func (g *Gateway) Shutdown(ctx context.Context) error {
	err := g.srv.Shutdown(ctx)
	g.stop()
	g.wg.Wait()
	return err
}

// refreshLoop reads the routes at start and then every RouteRefresh.
func (g *Gateway) refreshLoop(ctx context.Context) {
	t := time.NewTicker(g.o.RouteRefresh)
	defer t.Stop()
	for {
		if err := g.router.Refresh(ctx); err != nil && ctx.Err() == nil {
			g.log.Warn("route discovery failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// handler is the whole HTTP surface. From the outside in: access log,
// security headers, CORS (so a preflight never needs the token), the
// caller's identity, then the routes (each checks its tier).
func (g *Gateway) handler(dash http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /api/version", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"version":%q}`, api.Version)
	})
	mux.Handle("GET /metrics", g.metrics.handler(g.auth.guard))
	mux.Handle("/api/", g.router)
	mux.Handle("/api", g.router)
	mux.Handle("/", dash)
	var h http.Handler = mux
	h = g.auth.authenticate(h)
	h = withCORS(g.o.CORSOrigins, h)
	h = securityHeaders(h)
	return accessLog(g.log, h)
}
