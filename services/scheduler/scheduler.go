// Package scheduler keeps the jobs catalog and the schedules, and turns them
// into Commands on time, exactly once across nodes.
//
// Jobs and schedules live in the KV buckets upstream uses (jobs,
// schedules), so every node sees the same catalog. The micro services jobs
// and schedules (micro.go) edit them and run a job now; the Engine watches
// the schedules and fires their ticks. Several nodes may run the engine
// against one NATS: each tick is claimed in the schedule_claims bucket by a
// compare-and-set that one node wins, and its exec_id and request_id are
// derived from the schedule and the tick, so even a repeated publish is one
// execution downstream.
//
// Schedules are upstream's model (when.go, model.go): calendar ticks
// (calendar.go), reconcile polls per PC or per target that fire where the
// projection shows the fleet behind (reconcile.go, completions.go,
// roster.go), behind the freeze and the schedule's gates (gates.go). This
// backend's older cron form is read and written as an extension (cron.go).
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/services/groups"
	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// Options configure the scheduler.
type Options struct {
	Conn     *nats.Conn
	DB       *store.DB // read only: agents (target counts), executions (live counts)
	NodeName string
	Logger   *slog.Logger

	// Replicas of the schedule_claims bucket when this node creates it.
	Replicas int
	// Workers bounds the fires in flight at once (default 128).
	Workers int
	// Clock is the engine's time source (default the system clock).
	Clock Clock
	// Observe is called after each tick the engine handled (tests).
	Observe func(schedule string, tick time.Time)
	// Roster resolves targets (shared with the groups service); nil: Start
	// opens one of its own.
	Roster *groups.Roster
	// Signer signs the Commands published (nil: unsigned); Envelopes
	// sends v2 envelopes to the PCs that report them (nil: never).
	Signer    *signing.Signer
	Envelopes *signing.Envelopes
	// Audit records each job and schedule change and each exec before it
	// is made (nil: no trail).
	Audit api.Auditor
	// ProjectionReady gates reconcile polls (see EngineOptions).
	ProjectionReady func() bool
}

// Scheduler is the running scheduler and its services.
type Scheduler struct {
	Catalog *Catalog
	Engine  *Engine

	svcs      []*api.Running
	ownRoster *groups.Roster // opened by Start, stopped by Stop
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// Start starts the services and the cron engine.
func Start(ctx context.Context, o Options) (*Scheduler, error) {
	if o.Conn == nil {
		return nil, errors.New("scheduler: no NATS connection")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Replicas < 1 {
		o.Replicas = 1
	}
	// An async publish whose ack never comes is dropped from the client's
	// pending set after this long (Firer has given up on it by then).
	js, err := jetstream.New(o.Conn, jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return nil, fmt.Errorf("scheduler: jetstream: %w", err)
	}
	bucket := func(name string) (jetstream.KeyValue, error) {
		kv, err := js.KeyValue(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("scheduler: kv %s: %w", name, err)
		}
		return kv, nil
	}
	jobs, err := bucket(wire.BucketJobs)
	if err != nil {
		return nil, err
	}
	scheds, err := bucket(wire.BucketSchedules)
	if err != nil {
		return nil, err
	}
	pins, err := bucket(wire.BucketScriptCurrent)
	if err != nil {
		return nil, err
	}
	extra := map[string]jetstream.KeyValueConfig{
		BucketFleetConfig:   {History: 5},
		BucketDispatch:      {History: 1, TTL: time.Hour},
		BucketSchedulesYAML: {History: 5},
		BucketJobsYAML:      {History: 5},
		BucketScriptStatus:  {History: 5},
	}
	var claims jetstream.KeyValue
	kvs := map[string]jetstream.KeyValue{}
	// This node's buckets, at o.Replicas: while a cluster starts they
	// cannot be placed until enough peers are up ("no suitable peers"),
	// so they are retried as the streams and the other services' are.
	err = streams.Retry(ctx, "scheduler: buckets", o.Logger, func(ctx context.Context) (err error) {
		if claims == nil {
			if claims, err = ensureClaims(ctx, js, o.Replicas); err != nil {
				return err
			}
		}
		for name, cfg := range extra {
			if kvs[name] != nil {
				continue
			}
			cfg.Bucket, cfg.Replicas, cfg.Storage = name, o.Replicas, jetstream.FileStorage
			kv, err := ensureKV(ctx, js, cfg)
			if err != nil {
				return err
			}
			kvs[name] = kv
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s := &Scheduler{Catalog: &Catalog{Jobs: jobs, Schedules: scheds, JS: js, DB: o.DB, MaxReply: int(o.Conn.MaxPayload()) - 1<<10,
		FleetConfig: kvs[BucketFleetConfig], SchedulesYAML: kvs[BucketSchedulesYAML], JobsYAML: kvs[BucketJobsYAML],
		ScriptStatus: kvs[BucketScriptStatus], Conn: o.Conn}}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	roster := o.Roster
	if roster == nil {
		roster, err = groups.OpenRoster(ctx, js, o.DB, o.Logger)
		if err != nil {
			s.Stop()
			return nil, fmt.Errorf("scheduler: %w", err)
		}
		roster.Now = o.Clock.Now
		s.ownRoster = roster
	}
	jobCache, err := WatchMirror[Manifest](bg, jobs, &s.wg, o.Logger)
	if err != nil {
		s.Stop()
		return nil, err
	}
	freeze, err := WatchFreeze(bg, kvs[BucketFleetConfig], &s.wg, o.Logger)
	if err != nil {
		s.Stop()
		return nil, err
	}
	marks, err := WatchMarks(bg, kvs[BucketDispatch], &s.wg, o.Logger, o.Clock.Now)
	if err != nil {
		s.Stop()
		return nil, err
	}
	firer := &Firer{JS: js, Log: o.Logger, Pins: pins, Signer: o.Signer, Envelopes: o.Envelopes, Audit: o.Audit, Agents: &AgentCounter{Roster: roster, DB: o.DB, Now: o.Clock.Now, Log: o.Logger}}
	s.Engine, err = StartEngine(ctx, EngineOptions{
		Schedules: scheds, Jobs: jobs, JobCache: jobCache, JS: js, Claims: claims, Firer: firer, Clock: o.Clock,
		DB: o.DB, Marks: marks, Freeze: freeze, Observe: o.Observe, ProjectionReady: o.ProjectionReady,
		Instance: o.NodeName + "-" + uuid.NewString()[:8], Workers: o.Workers, Logger: o.Logger,
	})
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	s.Catalog.Agents, s.Catalog.Completions = firer.Agents, s.Engine.comp
	for _, svc := range services(s.Catalog, s.Engine, firer, o.Clock, o.Logger, o.Audit) {
		r, err := api.Start(o.Conn, svc)
		if err != nil {
			s.Stop()
			return nil, fmt.Errorf("scheduler: %w", err)
		}
		s.svcs = append(s.svcs, r)
	}
	return s, nil
}

// Stop stops answering, then firing, and waits for both.
func (s *Scheduler) Stop() error {
	var errs []error
	for _, r := range s.svcs {
		errs = append(errs, r.Stop())
	}
	if s.Engine != nil {
		s.Engine.Stop()
	}
	s.cancel()
	s.wg.Wait()
	s.ownRoster.Stop()
	return errors.Join(errs...)
}

// ensureKV opens a bucket, creating it with cfg when it does not exist
// (another service may have made it first: its config stands).
func ensureKV(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("scheduler: kv %s: %w", cfg.Bucket, err)
	}
	kv, err = js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, cfg.Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("scheduler: create kv %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}
