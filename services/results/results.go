// Package results answers what ran where: the results list with filters,
// one result's detail, and the live tail of a run in flight.
package results

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/store"
)

// Options configure the results services.
type Options struct {
	Conn     *nats.Conn
	DB       *store.DB
	NodeName string
	Logger   *slog.Logger
}

// Service is the running results services.
type Service struct{}

// Start starts answering.
func Start(ctx context.Context, o Options) (*Service, error) {
	o.Logger.Warn("results: not built yet")
	return nil, nil
}

// Stop stops answering.
func (s *Service) Stop() error { return nil }
