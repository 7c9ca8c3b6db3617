// Package projector turns the agents' JetStream streams into the SQLite
// projection, exactly once, and serves kanade.projector.status.
package projector

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/store"
)

// Options configure the projector.
type Options struct {
	Conn     *nats.Conn
	DB       *store.DB
	NodeName string
	Logger   *slog.Logger
}

// Projector is a running projector.
type Projector struct{}

// Start starts consuming.
func Start(ctx context.Context, o Options) (*Projector, error) {
	o.Logger.Warn("projector: not built yet")
	return nil, nil
}

// Stop stops consuming and waits for the batch in hand to commit.
func (p *Projector) Stop() error { return nil }
