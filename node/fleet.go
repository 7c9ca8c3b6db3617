package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/services/agentconfig"
	"github.com/kanade-go/kanade/services/agents"
	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/services/groups"
	"github.com/kanade-go/kanade/store"
)

// stoppers stops several services in order, as one.
type stoppers []stopper

func (s stoppers) Stop() error {
	var errs []error
	for i := len(s) - 1; i >= 0; i-- {
		errs = append(errs, s[i].Stop())
	}
	return errors.Join(errs...)
}

// startFleet starts the fleet services that keep their state in KV and so
// need no fresh projection: groups (with the materializer of derived
// groups) and config. The agents service reads the projection and starts
// with the results services, behind the gate (startAgents).
func startFleet(ctx context.Context, nc *nats.Conn, o Options, roster *groups.Roster, db *store.DB, aud api.Auditor, log *slog.Logger) (stopper, error) {
	g, err := groups.Start(ctx, groups.Options{
		Conn: nc, DB: db, Roster: roster, Logger: log.With("component", "groups"),
		Replicas: o.Replicas, Materialize: true, Audit: aud,
	})
	if err != nil {
		return nil, fmt.Errorf("start groups: %w", err)
	}
	c, err := agentconfig.Start(ctx, agentconfig.Options{Conn: nc, Logger: log.With("component", "config"), Audit: aud})
	if err != nil {
		g.Stop()
		return nil, fmt.Errorf("start config: %w", err)
	}
	return stoppers{g, c}, nil
}

// startAgents starts the agents service (the roster as operators browse
// it), on the results connection.
func startAgents(ctx context.Context, nc *nats.Conn, db *store.DB, roster *groups.Roster, aud api.Auditor, log *slog.Logger) (stopper, error) {
	a, err := agents.Start(ctx, agents.Options{Conn: nc, DB: db, Roster: roster, Logger: log.With("component", "agents"), Audit: aud})
	if err != nil {
		return nil, fmt.Errorf("start agents: %w", err)
	}
	return a, nil
}
