// Package embedded runs nats-server with JetStream inside the kanade process:
// single-node mode, where nothing but the kanade binary is installed.
// Services in the same process reach it through in-process connections;
// agents and the nats CLI through the optional client listener.
package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Sync says when the JetStream file store fsyncs.
type Sync string

const (
	// SyncAlways fsyncs every write before the publish is acked: an acked
	// message survives a power loss. Agents delete their outbox on ack, so
	// this is the safe choice.
	SyncAlways Sync = "always"
	// SyncInterval fsyncs every 2 minutes (nats-server's default): faster,
	// but a machine crash can lose acked messages of the last interval.
	SyncInterval Sync = "interval"
)

// Options configure the embedded server.
type Options struct {
	// StoreDir holds JetStream's files (required: the default is a temp dir).
	StoreDir string
	// Listen is the client listener "host:port"; empty or "off" leaves only
	// in-process connections. Port 0 picks a free port.
	Listen string
	// ServerName is stable across restarts, so JetStream finds its state.
	ServerName string
	Sync       Sync
	Logger     *slog.Logger
	// ConfigFile, if set, is a nats-server configuration file loaded first
	// (authorization, accounts); the options above override it.
	ConfigFile string
	// Account names the config's account the backend's in-process
	// connections join when the config uses accounts; empty = the global
	// account. See InternalUser.
	Account string
	// Cluster, when its Listen is set, routes this server to the other
	// nodes' embedded servers as one JetStream cluster.
	Cluster Cluster
	// MaxPayload, when set, is the server's max_payload in bytes (tests
	// use a small one to reach paging with few rows); 0 keeps the
	// config's or the server's default of 1 MiB.
	MaxPayload int32
}

// Server is a running embedded nats-server.
type Server struct {
	ns      *server.Server
	auth    nats.Option // how in-process connections authenticate; nil = no auth
	account string      // the account in-process connections join; "" = global
	open    bool        // network clients get in without credentials
	host    string      // client listener host; "" = none
}

// Start starts the server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("embedded nats: a store dir is required")
	}
	if o.ServerName == "" {
		o.ServerName = "kanade"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	opts := &server.Options{}
	if o.ConfigFile != "" {
		fo, err := server.ProcessConfigFile(o.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: config %s: %w", o.ConfigFile, err)
		}
		opts = fo
	}
	opts.ServerName = o.ServerName
	opts.JetStream = true
	opts.StoreDir = filepath.Join(o.StoreDir)
	opts.NoSigs = true // the process owns its signals and its shutdown order
	opts.DisableJetStreamBanner = true
	opts.NoLog = false
	if o.MaxPayload > 0 {
		opts.MaxPayload = o.MaxPayload
	}
	switch o.Sync {
	case SyncAlways, "":
		opts.SyncAlways = true
	case SyncInterval:
		opts.SyncAlways = false
	default:
		return nil, fmt.Errorf("embedded nats: --nats-sync must be always or interval, not %q", o.Sync)
	}
	if o.Listen == "" || o.Listen == "off" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen address %q: %w", o.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen port %q: %w", port, err)
		}
		if p == 0 {
			p = -1 // nats-server's "pick a free port"
		}
		if host == "" {
			host = "127.0.0.1"
		}
		if p > 0 {
			// nats-server only logs a busy port and never becomes ready:
			// find out first and say so plainly.
			l, err := net.Listen("tcp", net.JoinHostPort(host, port))
			if err != nil {
				return nil, fmt.Errorf("embedded nats: listen %s: %w", o.Listen, err)
			}
			l.Close()
		}
		opts.Host, opts.Port = host, p
	}
	if err := o.Cluster.apply(opts); err != nil {
		return nil, err
	}
	auth, account, err := internalAuth(opts, o.Account)
	if err != nil {
		return nil, err
	}
	// Open: no authorization at all, or a no_auth_user that anonymous
	// clients become.
	open := auth == nil || opts.NoAuthUser != ""
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.SetLoggerV2(&slogAdapter{l: o.Logger.With("component", "nats-server")}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		if !opts.DontListen {
			return nil, fmt.Errorf("embedded nats: not ready: is %s already in use?", o.Listen)
		}
		return nil, errors.New("embedded nats: not ready within 30s")
	}
	srv := &Server{ns: ns, auth: auth, account: account, open: open}
	if !opts.DontListen {
		srv.host = opts.Host
	}
	return srv, nil
}

// Account is the account the in-process connections join ("" = the
// global account).
func (s *Server) Account() string { return s.account }

// OpenToAnonymous reports whether network clients can connect without
// credentials (false when there is no client listener).
func (s *Server) OpenToAnonymous() bool { return s.open && s.host != "" }

// ListenHost is the client listener's host ("" when there is none).
func (s *Server) ListenHost() string { return s.host }

// ClientURL is the nats:// URL agents use, or "" with no listener.
func (s *Server) ClientURL() string {
	if s.ns.Addr() == nil {
		return ""
	}
	return s.ns.ClientURL()
}

// Connect opens an in-process connection named name.
func (s *Server) Connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{nats.InProcessServer(s.ns), nats.Name(name), nats.MaxReconnects(-1), nats.DrainTimeout(5 * time.Second)}
	if s.auth != nil {
		opts = append(opts, s.auth)
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect in-process %s: %w", name, err)
	}
	return nc, nil
}

// NATS exposes the server, for tests and cluster wiring.
func (s *Server) NATS() *server.Server { return s.ns }

// Shutdown stops the server and waits until its files are closed.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// slogAdapter routes nats-server's logger to slog.
type slogAdapter struct{ l *slog.Logger }

// Notices (banner, listeners) are routine: debug level keeps the log readable.
func (a *slogAdapter) Noticef(f string, v ...any) { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a *slogAdapter) Warnf(f string, v ...any)   { a.l.Warn(fmt.Sprintf(f, v...)) }
func (a *slogAdapter) Fatalf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a *slogAdapter) Errorf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a *slogAdapter) Debugf(f string, v ...any)  { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a *slogAdapter) Tracef(f string, v ...any)  { a.l.Debug(fmt.Sprintf(f, v...)) }
