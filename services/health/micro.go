package health

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
)

// Subjects the gateway's /metrics reads besides the HTTP routes.
const (
	SubjectFleet      = "kanade.health.fleet"
	SubjectExecutions = "kanade.health.executions"
	SubjectJetStream  = "kanade.jetstream.status"
)

// Options configure the health services.
type Options struct {
	Conn          *nats.Conn
	DB            *store.DB
	Logger        *slog.Logger
	DegradedBelow float64       // see Checker.DegradedBelow
	Alive         time.Duration // see Checker.Alive
}

// Service is the running health and jetstream services.
type Service struct{ running []*api.Running }

// Stop stops both.
func (s *Service) Stop() error {
	var errs []error
	for _, r := range s.running {
		errs = append(errs, r.Stop())
	}
	return errors.Join(errs...)
}

// Definitions are the endpoints of the health and jetstream services.
func Definitions() []api.Definition {
	return []api.Definition{
		{Service: "health", Endpoints: []api.Endpoint{
			{Name: "fleet", Subject: SubjectFleet, HTTP: "GET /api/health/fleet", Tier: api.TierViewer},
			{Name: "executions", Subject: SubjectExecutions, Tier: api.TierViewer},
		}},
		{Service: "jetstream", Endpoints: []api.Endpoint{
			{Name: "status", Subject: SubjectJetStream, HTTP: "GET /api/jetstream/status", Tier: api.TierViewer},
		}},
	}
}

// Start starts the health and jetstream micro services.
func Start(o Options) (*Service, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, err
	}
	c := &Checker{DB: o.DB, JS: js, Log: o.Logger, DegradedBelow: o.DegradedBelow, Alive: o.Alive}
	defs := Definitions()
	svcs := []api.Service{{
		Name:        defs[0].Service,
		Description: "the fleet's health rollup and execution counts",
		Logger:      o.Logger,
		Endpoints: defs[0].Bind(map[string]api.Handler{
			"fleet": func(ctx context.Context, r api.Request) (any, error) {
				f := c.Fleet(ctx)
				b, err := api.Marshal(f)
				if err != nil {
					return nil, err
				}
				if f.Status == StatusDegraded {
					// Upstream answers 503 with the same body; readers parse it.
					return nil, &api.Error{Status: http.StatusServiceUnavailable, Message: string(b), JSON: true}
				}
				return b, nil
			},
			"executions": func(ctx context.Context, r api.Request) (any, error) { return c.Executions(ctx) },
		}),
	}, {
		Name:        defs[1].Service,
		Description: "usage of the JetStream streams, KV buckets and object stores",
		Logger:      o.Logger,
		Endpoints: defs[1].Bind(map[string]api.Handler{
			"status": func(ctx context.Context, r api.Request) (any, error) { return JetStream(ctx, js), nil },
		}),
	}}
	s := &Service{}
	for _, sv := range svcs {
		r, err := api.Start(o.Conn, sv)
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.running = append(s.running, r)
	}
	return s, nil
}
