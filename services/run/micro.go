package run

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/signing"
)

// Subject is the run endpoint's NATS subject (`kanade run` requests it).
const Subject = "kanade.run"

// Options configure the run service.
type Options struct {
	Conn      *nats.Conn
	Signer    *signing.Signer
	Envelopes *signing.Envelopes // see Runner.Envelopes
	Logger    *slog.Logger
	Grace     time.Duration // see Runner.Grace
	// Workers bounds the runs waited for at once (default 64): a run holds
	// its worker until the result or the timeout, but waiting costs little.
	Workers int
	// Audit records each run before it is sent (nil: no trail).
	Audit api.Auditor
}

// Definitions are the run service's endpoint (its gateway timeout the
// default grace's; Start sets the configured one).
func Definitions() []api.Definition {
	return []api.Definition{{Service: "run", Endpoints: []api.Endpoint{{
		Name: "run", Subject: Subject, HTTP: "POST /api/run",
		Tier: api.TierOperator, Audit: "run", AuditTarget: "pc_id",
		Timeout: Options{}.MaxWait(),
	}}}}
}

// MaxWait is the longest a run request can take: the largest timeout,
// the grace and a margin to answer in.
func (o Options) MaxWait() time.Duration {
	g := o.Grace
	if g <= 0 {
		g = DefaultGrace
	}
	return MaxTimeoutSecs*time.Second + g + 5*time.Second
}

// Start starts the run micro service.
func Start(o Options) (*api.Running, error) {
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, err
	}
	if o.Workers <= 0 {
		o.Workers = 64
	}
	r := &Runner{Conn: o.Conn, JS: js, Signer: o.Signer, Envelopes: o.Envelopes, Grace: o.Grace}
	def := Definitions()[0]
	eps := def.Bind(map[string]api.Handler{
		"run": func(ctx context.Context, req api.Request) (any, error) {
			var body Request
			if err := api.Params(req, &body); err != nil {
				return nil, err
			}
			return r.Run(ctx, body)
		},
	})
	eps[0].Timeout = o.MaxWait()
	return api.Start(o.Conn, api.Service{
		Name:        def.Service,
		Description: "ad-hoc scripts on one PC, answered with the agent's result",
		Logger:      o.Logger,
		Workers:     o.Workers,
		Timeout:     o.MaxWait(),
		Audit:       o.Audit,
		Endpoints:   eps,
	})
}
