// Package results answers the questions operators ask all day, read-only on
// the SQLite projection: what ran where and what it printed (service
// results: list, detail, live tail), how each deployment went and stopping
// one (service executions: list, detail, kill). The fleet roster is
// services/agents.
//
// Each capability is plain Go that takes a *store.DB (List, Detail, Tail,
// ListExecutions, ExecutionDetail, Kill); micro.go binds them
// to NATS micro services through services/api.
package results

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
)

// Options configure the results and executions services.
type Options struct {
	Conn   *nats.Conn
	DB     *store.DB
	Logger *slog.Logger
	// Audit records each kill before it is sent (nil: no trail).
	Audit api.Auditor

	// TailTimeout bounds the job.tail request to an agent (default 3 s):
	// past it the tail answers "waiting" rather than an error.
	TailTimeout time.Duration
	// Workers bounds concurrent requests per service (default 16).
	Workers int
	// HeavyQueries bounds the list queries that may scan (regex or status
	// filters) running at once (default 4), so they can never take every
	// worker or every read connection: detail, tail and unfiltered lists
	// keep answering while slow searches run.
	HeavyQueries int
	// Timeout is each request's deadline (default 9 s, under the gateway's
	// 10 s). A query still running then is interrupted and answers 503.
	Timeout time.Duration
}

// DefaultTailTimeout is how long tail waits for an agent, as upstream.
const DefaultTailTimeout = 3 * time.Second

// Service is the running results and executions services.
type Service struct {
	running []*api.Running
}

// Start registers the two micro services on o.Conn and starts answering.
func Start(ctx context.Context, o Options) (*Service, error) {
	if o.Conn == nil || o.DB == nil {
		return nil, errors.New("results: a NATS connection and a store are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.TailTimeout <= 0 {
		o.TailTimeout = DefaultTailTimeout
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.HeavyQueries <= 0 {
		o.HeavyQueries = 4
	}
	s := &Service{}
	for _, def := range definitions(o) {
		r, err := api.Start(o.Conn, def)
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.running = append(s.running, r)
	}
	// Started means reachable: api.Start flushes each service's
	// subscriptions before it returns.
	return s, nil
}

// Stop leaves the queue groups and waits for requests in flight.
func (s *Service) Stop() error {
	if s == nil {
		return nil
	}
	var errs []error
	for _, r := range s.running {
		errs = append(errs, r.Stop())
	}
	s.running = nil
	return errors.Join(errs...)
}
