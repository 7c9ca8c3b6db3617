package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/node"
)

func serve(args []string) error {
	f := newFlags("serve")
	dataDir := f.String("data-dir", "./kanade-data", "where the SQLite projection and the embedded JetStream store live")
	httpAddr := f.String("http", "127.0.0.1:8080", "HTTP listen address of the gateway (port 0 picks a free port)")
	natsListen := f.String("nats-listen", "127.0.0.1:4222", `embedded NATS client listener for agents and the nats CLI; "off" = in-process only`)
	natsSync := f.String("nats-sync", "always", "embedded JetStream fsync: always (an acked message survives power loss) or interval (every 2 min, faster)")
	natsConfig := f.String("nats-config", "", "nats-server configuration file for the embedded server: the accounts kanade nats-users writes (each agent in its own account)")
	natsURL := f.String("nats-url", "", "connect to this NATS (cluster) instead of embedding one")
	natsCreds := f.String("nats-creds", "", "credentials file for --nats-url")
	natsUser := f.String("nats-user", "", "user for --nats-url")
	natsPassword := f.String("nats-password", "", "password for --nats-url")
	natsToken := f.String("nats-token", "", "token for --nats-url")
	services := f.String("services", "all", "services this node runs: all, or a comma list of gateway,results,projector,scheduler")
	nodeName := f.String("node-name", node.DefaultNodeName(), "this node's name; names its durable consumers, so it must be unique per node")
	replicas := f.Int("replicas", 1, "replicas of the streams this node creates (3 on a cluster)")
	logLevel := f.String("log-level", "info", "debug, info, warn or error")
	demo := f.Bool("demo", false, "also run 25 simulated agents, two sample jobs and a schedule firing every minute")
	// Each capability declares its own flags in flags_<capability>.go and
	// returns how they fill node.Options.
	apply := []func(*node.Options){
		gatewayFlags(f), accountsFlags(f), projectorFlags(f), resultsFlags(f), schedulerFlags(f), clusterFlags(f),
	}
	applySigning := signingFlags(f)
	applyHealth := healthFlags(f)
	if err := f.parse(args); err != nil {
		return err
	}
	log, err := newLogger(os.Stderr, *logLevel)
	if err != nil {
		return err
	}
	svcs, err := node.ParseServices(*services)
	if err != nil {
		return fmt.Errorf("--services: %w", err)
	}
	if *natsSync != string(embedded.SyncAlways) && *natsSync != string(embedded.SyncInterval) {
		return fmt.Errorf("--nats-sync must be always or interval, not %q", *natsSync)
	}
	o := node.Options{
		DataDir:      *dataDir,
		HTTP:         *httpAddr,
		NATSListen:   *natsListen,
		NATSSync:     embedded.Sync(*natsSync),
		NATSConfig:   *natsConfig,
		NATSURL:      *natsURL,
		NATSCreds:    *natsCreds,
		NATSUser:     *natsUser,
		NATSPassword: *natsPassword,
		NATSToken:    *natsToken,
		Services:     svcs,
		NodeName:     *nodeName,
		Replicas:     *replicas,
		Logger:       log,
	}
	for _, a := range apply {
		a(&o)
	}
	if err := applyHealth(&o); err != nil {
		return err
	}
	if err := applySigning(&o); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runNode(ctx, o, *demo, log)
}
