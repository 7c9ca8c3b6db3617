// Package nodetest starts the real parts tests run against: an embedded
// nats-server with JetStream on a random loopback port, the streams of the
// contract, and a SQLite store in t.TempDir(). No mocks.
package nodetest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/streams"
)

// Node is a started test node.
type Node struct {
	Server *embedded.Server
	URL    string // nats://127.0.0.1:PORT
	Dir    string
	DB     *store.DB
	Logger *slog.Logger
}

// Logger logs to the test output when KANADE_TEST_LOG is set, else nowhere.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("KANADE_TEST_LOG") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Option changes the embedded server a test starts.
type Option func(*embedded.Options)

// MaxPayload sets the server's max_payload: a small one makes a list page
// with a few hundred rows instead of thousands.
func MaxPayload(n int32) Option { return func(o *embedded.Options) { o.MaxPayload = n } }

// Start starts an embedded server with the streams, and opens a store.
// Both stop at the end of the test.
func Start(t testing.TB, opts ...Option) *Node {
	t.Helper()
	dir := t.TempDir()
	log := Logger(t)
	eo := embedded.Options{
		StoreDir: filepath.Join(dir, "nats"),
		Listen:   "127.0.0.1:0",
		Sync:     embedded.SyncInterval,
		Logger:   log,
	}
	for _, o := range opts {
		o(&eo)
	}
	srv, err := embedded.Start(eo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	n := &Node{Server: srv, URL: srv.ClientURL(), Dir: dir, Logger: log}
	nc := n.Conn(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := streams.Ensure(context.Background(), js, 1, log); err != nil {
		t.Fatal(err)
	}
	n.DB = OpenStore(t, filepath.Join(dir, "kanade.db"))
	return n
}

// OpenStore opens a store at path, closed at the end of the test.
func OpenStore(t testing.TB, path string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Conn opens a TCP connection to the node, closed at the end of the test.
func (n *Node) Conn(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(n.URL, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream is a JetStream context on a new connection.
func (n *Node) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(n.Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	return js
}
