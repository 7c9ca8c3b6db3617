package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/node"
	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/sim"
)

// runNode runs the node and, with demo, the demo next to it: started once
// the node is ready, stopped before the node stops (agents switched off
// first, then the backend).
func runNode(ctx context.Context, o node.Options, demo bool, log *slog.Logger) error {
	// The ready line is the one line on stdout (logs go to stderr), so
	// scripts can read it alone.
	printReady := func(r node.Ready) { fmt.Fprintln(os.Stdout, r.Line()) }
	if !demo {
		return node.Run(ctx, o, printReady)
	}
	if o.NATSURL == "" && (o.NATSListen == "" || o.NATSListen == "off") {
		return errors.New("--demo needs a NATS client listener for its agents: drop --nats-listen off (or use --nats-url)")
	}
	// The demo signs (with the configured key, else a fresh one) and its
	// agents enforce.
	if err := demoSigner(&o); err != nil {
		return err
	}

	// The node runs on its own context so that a signal stops the demo
	// first and only then the node.
	nodeCtx, stopNode := context.WithCancel(context.Background())
	defer stopNode()
	stops := make(chan func(), 1)
	var demoErr error // ready runs on this goroutine, inside node.Run
	ready := func(r node.Ready) {
		printReady(r)
		stopDemo, err := startDemo(nodeCtx, r.NATS, o, log)
		if err != nil {
			if nodeCtx.Err() == nil { // a stop while starting is no failure
				demoErr = err
			}
			stopNode()
			return
		}
		stops <- stopDemo
	}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-ctx.Done():
		case <-nodeCtx.Done():
		}
		select {
		case stopDemo := <-stops:
			stopDemo()
		default:
		}
		stopNode()
	}()
	err := node.Run(nodeCtx, o, ready)
	stopNode()
	<-watched
	// The demo may have finished starting after the watcher looked.
	select {
	case stopDemo := <-stops:
		stopDemo()
	default:
	}
	if err == nil {
		err = demoErr
	}
	return err
}

// startDemo seeds the demo jobs and schedule and starts the demo fleet on
// its own connection to the node's NATS.
func startDemo(ctx context.Context, url string, o node.Options, log *slog.Logger) (func(), error) {
	opts := append([]nats.Option{nats.Name("kanade-demo"), nats.MaxReconnects(-1)},
		natsAuth(o.NATSCreds, o.NATSUser, o.NATSPassword, o.NATSToken)...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("demo: connect %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("demo: jetstream: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := sim.SeedDemo(sctx, js); err != nil {
		nc.Close()
		return nil, err
	}
	so := sim.DemoOptions()
	so.Conn, so.Logger = nc, log.With("component", "demo")
	if so.Keyring, err = signing.NewKeyring([]signing.KeyringEntry{o.Signer.KeyringEntry()}); err != nil {
		nc.Close()
		return nil, err
	}
	fleet, err := sim.Start(sctx, so)
	if err != nil {
		nc.Close()
		return nil, err
	}
	var jobs, schedules []string
	for _, j := range sim.DemoJobs() {
		jobs = append(jobs, j.ID)
	}
	for _, s := range sim.DemoSchedules() {
		schedules = append(schedules, s.ID+" ("+s.Cron+")")
	}
	log.Info("demo started", "agents", so.Agents, "groups", so.Groups, "jobs", jobs, "schedules", schedules,
		"enforcing_kid", o.Signer.Kid())
	return func() {
		fleet.Stop()
		nc.Close()
		log.Info("demo stopped", "stats", fleet.Stats().String())
	}, nil
}
