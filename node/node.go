// Package node assembles one kanade backend node: NATS (embedded or
// external), the agent streams, the SQLite store, the services this node is
// given, and the gateway. Run owns every part it starts and stops them in
// one written-down order.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/gateway"
	"github.com/kanade-go/kanade/natsauth"
	"github.com/kanade-go/kanade/services/accounts"
	"github.com/kanade-go/kanade/services/agentconfig"
	"github.com/kanade-go/kanade/services/agents"
	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/services/audit"
	"github.com/kanade-go/kanade/services/commandsigning"
	"github.com/kanade-go/kanade/services/groups"
	"github.com/kanade-go/kanade/services/health"
	"github.com/kanade-go/kanade/services/projector"
	"github.com/kanade-go/kanade/services/results"
	"github.com/kanade-go/kanade/services/run"
	"github.com/kanade-go/kanade/services/scheduler"
	"github.com/kanade-go/kanade/services/scripts"
	"github.com/kanade-go/kanade/services/snapshot"
	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/streams"
)

// Service names accepted by Options.Services.
const (
	ServiceGateway   = "gateway"
	ServiceResults   = "results"
	ServiceProjector = "projector"
	ServiceScheduler = "scheduler"
)

// AllServices is what "all" means.
var AllServices = []string{ServiceGateway, ServiceResults, ServiceProjector, ServiceScheduler}

// Options configure a node. cmd/kanade fills them from flags and env.
type Options struct {
	DataDir    string
	HTTP       string // gateway listen address
	NATSListen string // embedded client listener; "off" = in-process only
	NATSSync   embedded.Sync
	NATSConfig string // optional nats-server config file for the embedded server
	// NATSAccount is the config's account the in-process connections join
	// (empty = global account); see embedded.InternalUser.
	NATSAccount string
	// Cluster routes the embedded server to other nodes' (see embedded.Cluster).
	Cluster embedded.Cluster
	// ResultsJoinLag and ResultsLeaveLag bound how far this node's
	// projection may be behind for its read services to join and to stay
	// in their queue groups (see resultsGate; defaults 1 s and 10 s).
	ResultsJoinLag, ResultsLeaveLag time.Duration

	// External mode: connect here instead of embedding a server.
	NATSURL      string
	NATSCreds    string
	NATSUser     string
	NATSPassword string
	NATSToken    string

	Services []string
	NodeName string
	Replicas int
	Logger   *slog.Logger

	// HealthDegradedBelow: see health.Checker.DegradedBelow.
	HealthDegradedBelow float64

	Gateway   gateway.Options
	Accounts  accounts.Options
	Projector projector.Options
	Results   results.Options
	Scheduler scheduler.Options
	Snapshot  snapshot.Options

	// Signer signs every Command this node publishes (nil: unsigned, as
	// upstream without a key). Every node of a cluster holds the same key.
	Signer *signing.Signer
	// Envelopes, when set, sends v2 envelopes to the PCs that report them.
	Envelopes *signing.Envelopes
}

// Ready tells where a started node listens.
type Ready struct {
	HTTP string // "" when this node runs no gateway
	NATS string // the URL agents use; "" when in-process only
}

// Line is the ready line printed to stderr.
func (r Ready) Line() string {
	h, n := r.HTTP, r.NATS
	if h == "" {
		h = "off"
	}
	if n == "" {
		n = "off"
	}
	return fmt.Sprintf("kanade ready http=%s nats=%s", h, n)
}

// Definitions are the endpoint definitions of every service a node can
// run: the gateway's fallback routes and the NATS roles' permissions.
func Definitions() []api.Definition {
	var out []api.Definition
	out = append(out, accounts.Definitions()...)
	out = append(out, audit.Definitions()...)
	out = append(out, results.Definitions()...)
	out = append(out, agents.Definitions()...)
	out = append(out, groups.Definitions()...)
	out = append(out, agentconfig.Definitions()...)
	out = append(out, projector.Definitions()...)
	out = append(out, snapshot.Definitions()...)
	out = append(out, scheduler.Definitions()...)
	out = append(out, commandsigning.Definitions()...)
	out = append(out, run.Definitions()...)
	out = append(out, scripts.Definitions()...)
	out = append(out, health.Definitions()...)
	out = append(out, clusterDefinition)
	return out
}

// ParseServices turns "all" or a comma list into service names.
func ParseServices(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" || s == "all" {
		return slices.Clone(AllServices), nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(AllServices, p) {
			return nil, fmt.Errorf("unknown service %q (want all or a comma list of %s)", p, strings.Join(AllServices, ","))
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

var nodeNameRe = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// DefaultNodeName is the host name, cleaned to what consumer names allow.
func DefaultNodeName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "kanade"
	}
	return nodeNameRe.ReplaceAllString(h, "_")
}

// Run starts the node, calls ready once everything listens, and blocks
// until ctx is cancelled; then it stops everything and returns.
func Run(ctx context.Context, o Options, ready func(Ready)) (err error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if o.NodeName == "" {
		o.NodeName = DefaultNodeName()
	}
	if len(o.Services) == 0 {
		o.Services = slices.Clone(AllServices)
	}
	has := func(s string) bool { return slices.Contains(o.Services, s) }
	needStore := has(ServiceResults) || has(ServiceProjector) || has(ServiceScheduler)
	embed := o.NATSURL == ""

	// Shutdown order, written down once: HTTP, services, consumers, NATS
	// connections drained, SQLite, embedded server, data dir lock. Each
	// start pushes its stop; they run in reverse.
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()

	if embed || needStore {
		if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		unlock, err := lockDataDir(o.DataDir)
		if err != nil {
			return err
		}
		stops = append(stops, unlock)
	}

	var srv *embedded.Server
	natsURL := ""
	if embed {
		srv, err = embedded.Start(embedded.Options{
			StoreDir:   filepath.Join(o.DataDir, "nats"),
			Listen:     o.NATSListen,
			ServerName: "kanade-" + o.NodeName,
			Sync:       o.NATSSync,
			Logger:     log,
			ConfigFile: o.NATSConfig,
			Account:    o.NATSAccount,
			Cluster:    o.Cluster,
		})
		if err != nil {
			return err
		}
		stops = append(stops, func() { srv.Shutdown(); log.Debug("embedded nats stopped") })
		natsURL = srv.ClientURL()
		if o.Cluster.Listen != "" {
			log.Info("waiting for the cluster's JetStream meta leader", "cluster", srv.ClusterURL())
			if err := srv.WaitJetStream(ctx); err != nil {
				if ctx.Err() != nil {
					return nil // stopped while waiting for the other nodes
				}
				return err
			}
		}
	} else {
		natsURL = o.NATSURL
	}
	warnings := securityWarnings(o, srv)
	for _, w := range warnings {
		log.Warn("security: " + w)
	}

	// Each connection with the channel its closed handler closes: a drain
	// ends with the close, so stopping waits on these instead of polling.
	type conn struct {
		nc     *nats.Conn
		closed chan struct{}
	}
	var conns []conn
	connect := func(name string) (*nats.Conn, error) {
		name = "kanade-" + o.NodeName + "-" + name
		var nc *nats.Conn
		var err error
		if embed {
			nc, err = srv.Connect(name)
		} else {
			nc, err = connectExternal(ctx, o, name, log)
		}
		if err != nil {
			return nil, err
		}
		c := conn{nc, make(chan struct{})}
		nc.SetClosedHandler(func(*nats.Conn) { close(c.closed) })
		conns = append(conns, c)
		return nc, nil
	}

	boot, err := connect("bootstrap")
	if err != nil {
		return err
	}
	js, err := jetstream.New(boot)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := streams.Retry(ctx, "bootstrap streams", log, func(ctx context.Context) error {
		return streams.Ensure(ctx, js, o.Replicas, log)
	}); err != nil {
		return err
	}
	if embed && o.Cluster.Listen != "" {
		// After a crash this node's replicas are behind: the projector must
		// not read them before they catch up.
		var names []string
		for _, c := range streams.Configs(o.Replicas) {
			names = append(names, c.Name)
		}
		if err := srv.WaitStreamsCurrent(ctx, srv.Account(), names...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}

	var db *store.DB
	var restored *snapshot.Info
	if needStore {
		if has(ServiceProjector) {
			if restored, err = restoreSnapshot(ctx, js, filepath.Join(o.DataDir, "kanade.db"), o.Signer, log); err != nil {
				return err
			}
		}
		db, err = store.Open(ctx, filepath.Join(o.DataDir, "kanade.db"), store.Options{})
		if err != nil {
			return err
		}
		stops = append(stops, func() {
			if err := db.Close(); err != nil {
				log.Warn("close store", "err", err)
			}
		})
	}

	// Registered after the store so that connections drain before SQLite
	// closes: a handler in flight may still be reading.
	stops = append(stops, func() {
		var draining []conn
		for _, c := range conns {
			if err := c.nc.Drain(); err != nil {
				log.Warn("drain nats connection", "err", err)
				c.nc.Close()
				continue
			}
			draining = append(draining, c)
		}
		// Drain closes the connection when done, or at its DrainTimeout.
		for _, c := range draining {
			<-c.closed
		}
	})

	// Every mutation on this node is recorded on AUDIT before it is made.
	auditConn, err := connect("audit")
	if err != nil {
		return err
	}
	// Like the streams, the buckets and AUDIT are made while a new
	// cluster may still be electing leaders: retried.
	var recorder *audit.Recorder
	if err := streams.Retry(ctx, "audit stream", log, func(ctx context.Context) (err error) {
		recorder, err = audit.NewRecorder(ctx, auditConn, o.Replicas)
		return err
	}); err != nil {
		return err
	}
	if db != nil {
		as, err := audit.Start(ctx, audit.Options{Conn: auditConn, DB: db, Replicas: o.Replicas, Logger: log.With("component", "audit")})
		if err != nil {
			return fmt.Errorf("start audit: %w", err)
		}
		stops = append(stops, func() { logStop(log, "audit", as.Stop()) })
	}

	// Every node answers the token check and the accounts, which need
	// nothing but NATS: a gateway-only node still authenticates.
	{
		nc, err := connect("accounts")
		if err != nil {
			return err
		}
		ao := o.Accounts
		ao.Conn, ao.Replicas, ao.Logger, ao.Audit = nc, o.Replicas, log.With("component", "accounts"), recorder
		var a *accounts.Running
		if err := streams.Retry(ctx, "start accounts", log, func(ctx context.Context) (err error) {
			a, err = accounts.Start(ctx, ao)
			return err
		}); err != nil {
			return err
		}
		stops = append(stops, func() { logStop(log, "accounts", a.Stop()) })
	}

	var proj *projector.Projector
	if has(ServiceProjector) {
		nc, err := connect("projector")
		if err != nil {
			return err
		}
		po := o.Projector
		po.Conn, po.DB, po.NodeName, po.Logger = nc, db, o.NodeName, log.With("component", "projector")
		p, err := projector.Start(ctx, po)
		if err != nil {
			return fmt.Errorf("start projector: %w", err)
		}
		stops = append(stops, func() { logStop(log, "projector", p.Stop()) })
		proj = p
		warnRetention(ctx, js, log, o.Projector.Retention, o.Snapshot.Interval >= 0)
		snc, err := connect("snapshot")
		if err != nil {
			return err
		}
		sn, err := startSnapshots(ctx, o, snc, db, p, recorder, log)
		if err != nil {
			return err
		}
		stops = append(stops, func() { logStop(log, "snapshots", sn.Stop()) })
	}
	// One roster (group membership, alive agents) for the scheduler's
	// targets and the groups service.
	var roster *groups.Roster
	if has(ServiceResults) || has(ServiceScheduler) {
		roster, err = groups.OpenRoster(ctx, js, db, log.With("component", "roster"))
		if err != nil {
			return fmt.Errorf("roster: %w", err)
		}
		stops = append(stops, roster.Stop)
	}
	if has(ServiceResults) {
		nc, err := connect("fleet")
		if err != nil {
			return err
		}
		f, err := startFleet(ctx, nc, o, roster, db, recorder, log)
		if err != nil {
			return err
		}
		stops = append(stops, func() { logStop(log, "fleet services", f.Stop()) })
	}
	var gate *resultsGate
	if has(ServiceResults) {
		// One package answers three micro services: results, executions
		// (with kanade.jobs.kill) and agents, all read-only on the store.
		nc, err := connect("results")
		if err != nil {
			return err
		}
		ro := o.Results
		ro.Conn, ro.DB, ro.Logger, ro.Audit = nc, db, log.With("component", "results"), recorder
		// The gate starts them, and stops them while this node's own
		// projection is too far behind to answer (see resultsGate).
		var caughtUp func(time.Duration) bool
		if proj != nil {
			caughtUp = proj.CaughtUp
		}
		gate = newResultsGate(caughtUp, func() (stopper, error) {
			s, err := results.Start(ctx, ro)
			if err != nil {
				return nil, fmt.Errorf("start results: %w", err)
			}
			a, err := startAgents(ctx, nc, db, roster, recorder, log)
			if err != nil {
				s.Stop()
				return nil, err
			}
			return stoppers{s, a}, nil
		}, nc, o.ResultsJoinLag, o.ResultsLeaveLag, ro.Logger)
		if proj != nil {
			gate.positions = projectionPositions(js, proj)
			gate.blocked = proj.JoinBlocked
		}
		gctx, stopGate := context.WithCancel(context.Background())
		gateDone := make(chan struct{})
		go func() { defer close(gateDone); gate.run(gctx) }()
		stops = append(stops, func() { stopGate(); <-gateDone })
	}
	if has(ServiceScheduler) {
		nc, err := connect("scheduler")
		if err != nil {
			return err
		}
		so := o.Scheduler
		so.Conn, so.DB, so.NodeName, so.Logger, so.Audit = nc, db, o.NodeName, log.With("component", "scheduler"), recorder
		so.Replicas = o.Replicas
		so.Roster = roster
		so.Signer, so.Envelopes = o.Signer, o.Envelopes
		// Reconcile polls read completions from this node's projection:
		// none here (a scheduler-only node), or one catching up or with an
		// unaccepted gap, leaves them to a peer.
		so.ProjectionReady = func() bool { return false }
		if proj != nil {
			so.ProjectionReady = func() bool { return proj.JoinBlocked() == "" && proj.CaughtUp(10*time.Second) }
		}
		stop, err := startCommandSigning(nc, o, log)
		if err != nil {
			return err
		}
		stops = append(stops, stop)
		s, err := scheduler.Start(ctx, so)
		if err != nil {
			return fmt.Errorf("start scheduler: %w", err)
		}
		stops = append(stops, func() { logStop(log, "scheduler", s.Stop()) })
		rnc, err := connect("run")
		if err != nil {
			return err
		}
		stopRun, err := startRunServices(rnc, o, recorder, log.With("component", "run"))
		if err != nil {
			return err
		}
		stops = append(stops, func() { logStop(log, "run", stopRun()) })
	}
	if has(ServiceResults) {
		nc, err := connect("health")
		if err != nil {
			return err
		}
		h, err := startHealth(nc, db, o, log.With("component", "health"))
		if err != nil {
			return err
		}
		stops = append(stops, func() { logStop(log, "health", h.Stop()) })
	}

	// Agents in their own NATS accounts look streams up and publish
	// results through this relay (see natsauth.Relay); every node runs one.
	{
		nc, err := connect("agent-relay")
		if err != nil {
			return err
		}
		stop, err := natsauth.Relay(nc, log.With("component", "agent-relay"))
		if err != nil {
			return err
		}
		stops = append(stops, stop)
	}
	// Every node answers for itself on the cluster view.
	{
		nc, err := connect("cluster")
		if err != nil {
			return err
		}
		v := &clusterView{node: o.NodeName, services: o.Services, gate: gate, proj: proj, restored: restored, warnings: warnings}
		if err := startClusterView(nc, v, log.With("component", "cluster")); err != nil {
			return err
		}
		stops = append(stops, func() { logStop(log, "cluster view", v.stop()) })
	}
	// Ready means ready to answer: wait (a while) for the read services.
	if gate != nil && !gate.waitJoined(ctx, 10*time.Second) {
		log.Warn("results: the projection is catching up; the read services join when it is fresh")
	}

	r := Ready{NATS: natsURL}
	if has(ServiceGateway) {
		nc, err := connect("gateway")
		if err != nil {
			return err
		}
		gwo := o.Gateway
		gwo.Conn, gwo.Addr, gwo.Logger = nc, o.HTTP, log
		gwo.Accounts, gwo.Definitions = true, Definitions()
		g, err := gateway.Start(gwo)
		if err != nil {
			return err
		}
		stops = append(stops, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			logStop(log, "gateway", g.Shutdown(sctx))
		})
		r.HTTP = g.URL()
	}

	if ready != nil {
		ready(r)
	}
	<-ctx.Done()
	log.Info("stopping")
	return nil
}

// startCommandSigning says once how this node signs, answers
// GET /api/command-signing, and follows the agents' heartbeats for the
// envelopes when they are on.
func startCommandSigning(nc *nats.Conn, o Options, log *slog.Logger) (func(), error) {
	if o.Signer == nil {
		log.Warn("command signing: no key (" + signing.EnvKey + ", " + signing.EnvKid + "): Commands are published unsigned, and agents that enforce signatures refuse them")
	} else {
		log.Info("command signing", "kid", o.Signer.Kid(), "fingerprint", o.Signer.Fingerprint())
	}
	if o.Envelopes != nil && o.Signer == nil {
		return nil, errors.New("command envelopes need a signing key: agents refuse an unsigned envelope")
	}
	r, err := commandsigning.Start(commandsigning.Options{Conn: nc, Signer: o.Signer, NodeName: o.NodeName, Logger: log.With("component", "command-signing")})
	if err != nil {
		return nil, fmt.Errorf("start command signing: %w", err)
	}
	stopWatch := func() {}
	if o.Envelopes != nil {
		if stopWatch, err = o.Envelopes.Watch(nc, log); err != nil {
			r.Stop()
			return nil, err
		}
	}
	return func() { stopWatch(); logStop(log, "command signing", r.Stop()) }, nil
}

func logStop(log *slog.Logger, what string, err error) {
	if err != nil {
		log.Warn("stop "+what, "err", err)
	}
}

// connectExternal connects to an external NATS, retrying with a log line
// until it answers (as agents do), and reconnecting forever afterwards.
func connectExternal(ctx context.Context, o Options, name string, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DrainTimeout(5 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "conn", name, "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "conn", name, "url", nc.ConnectedUrl()) }),
	}
	switch {
	case o.NATSCreds != "":
		opts = append(opts, nats.UserCredentials(o.NATSCreds))
	case o.NATSUser != "":
		opts = append(opts, nats.UserInfo(o.NATSUser, o.NATSPassword))
	case o.NATSToken != "":
		opts = append(opts, nats.Token(o.NATSToken))
	}
	for attempt := 1; ; attempt++ {
		nc, err := nats.Connect(o.NATSURL, opts...)
		if err == nil {
			return nc, nil
		}
		if errors.Is(err, nats.ErrAuthorization) || strings.Contains(err.Error(), "Authorization") {
			return nil, fmt.Errorf("connect %s: %w", o.NATSURL, err)
		}
		log.Warn("nats not reachable; retrying", "url", o.NATSURL, "err", err, "attempt", attempt)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect %s: %w", o.NATSURL, err)
		case <-time.After(2 * time.Second):
		}
	}
}

// lockDataDir takes an exclusive lock on the data dir, so a second node on
// the same dir refuses to start instead of corrupting the store.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "kanade.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another kanade (lock %s): %w", dir, path, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
