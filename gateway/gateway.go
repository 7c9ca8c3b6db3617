// Package gateway is kanade's HTTP front: it turns /api/* requests into NATS
// requests to the micro services and serves the embedded dashboard. It keeps
// no state, so any number of gateways can stand in front of one NATS.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/services/api"
)

// Options configure the gateway.
type Options struct {
	Conn   *nats.Conn
	Addr   string // "127.0.0.1:8080"; port 0 picks a free port
	Logger *slog.Logger
}

// Gateway is a running HTTP server.
type Gateway struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
	o   Options
}

// Start listens on o.Addr and serves until Shutdown.
func Start(o Options) (*Gateway, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: listen %s: %w", o.Addr, err)
	}
	g := &Gateway{ln: ln, log: o.Logger.With("component", "gateway"), o: o}
	g.srv = &http.Server{
		Handler:           g.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	go func() {
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("http server stopped", "err", err)
		}
	}()
	return g, nil
}

// URL is the address actually bound, as http://host:port.
func (g *Gateway) URL() string { return "http://" + g.ln.Addr().String() }

// Shutdown stops accepting requests and waits for those in flight.
func (g *Gateway) Shutdown(ctx context.Context) error { return g.srv.Shutdown(ctx) }

func (g *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /api/version", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"version":%q}`, api.Version)
	})
	return mux
}
