// Package scheduler keeps the jobs catalog and the schedules, and turns them
// into Commands on time, exactly once across nodes.
package scheduler

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/store"
)

// Options configure the scheduler.
type Options struct {
	Conn     *nats.Conn
	DB       *store.DB
	NodeName string
	Logger   *slog.Logger
}

// Scheduler is the running scheduler and its services.
type Scheduler struct{}

// Start starts the services and the cron engine.
func Start(ctx context.Context, o Options) (*Scheduler, error) {
	o.Logger.Warn("scheduler: not built yet")
	return nil, nil
}

// Stop stops firing and answering.
func (s *Scheduler) Stop() error { return nil }
