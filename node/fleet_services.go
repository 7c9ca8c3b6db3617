package node

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/services/health"
	"github.com/kanade-go/kanade/services/run"
	"github.com/kanade-go/kanade/services/scripts"
	"github.com/kanade-go/kanade/store"
)

// startRunServices starts, beside the scheduler, the other services that
// publish to agents or write what they gate on: run (ad-hoc scripts) and
// scripts (revoke), with schemas. It returns their stop.
func startRunServices(nc *nats.Conn, o Options, aud api.Auditor, log *slog.Logger) (func() error, error) {
	r, err := run.Start(run.Options{Conn: nc, Signer: o.Signer, Envelopes: o.Envelopes, Logger: log, Audit: aud})
	if err != nil {
		return nil, fmt.Errorf("start run: %w", err)
	}
	ss, err := scripts.Start(nc, log, aud)
	if err != nil {
		r.Stop()
		return nil, fmt.Errorf("start scripts: %w", err)
	}
	return func() error {
		errs := []error{r.Stop()}
		for _, s := range ss {
			errs = append(errs, s.Stop())
		}
		return errors.Join(errs...)
	}, nil
}

// startHealth starts the home feeds beside the read services. They answer
// even while the projection catches up: the rollup then counts what it has.
func startHealth(nc *nats.Conn, db *store.DB, o Options, log *slog.Logger) (*health.Service, error) {
	h, err := health.Start(health.Options{Conn: nc, DB: db, Logger: log, DegradedBelow: o.HealthDegradedBelow})
	if err != nil {
		return nil, fmt.Errorf("start health: %w", err)
	}
	return h, nil
}
