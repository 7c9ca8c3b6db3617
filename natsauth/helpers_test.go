package natsauth_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/natsauth"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/streams"
)

// lane is a real embedded server started with the generated configuration
// for some agents, and the backend's in-process connection.
type lane struct {
	srv     *embedded.Server
	layout  natsauth.Layout
	pw      map[string]string
	backend *nats.Conn
	bjs     jetstream.JetStream
}

func startLane(t *testing.T, pcs ...string) *lane {
	t.Helper()
	l, err := natsauth.Fleet(pcs, "backend")
	if err != nil {
		t.Fatal(err)
	}
	return startLayout(t, l)
}

// startLayout is startLane for a layout of the test's own.
func startLayout(t *testing.T, l natsauth.Layout) *lane {
	t.Helper()
	conf, err := natsauth.Render(l)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Options{StoreDir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:0",
		Sync: embedded.SyncInterval, Logger: nodetest.Logger(t), ConfigFile: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("backend")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	relay, err := natsauth.Relay(nc, nodetest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(relay)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := streams.Ensure(ctx, js, 1, nodetest.Logger(t)); err != nil {
		t.Fatal(err)
	}
	pw := map[string]string{}
	for _, u := range l.Backend {
		pw[u.Name] = u.Password
	}
	for _, c := range l.Callers {
		pw[c.Name] = c.Password
	}
	for _, a := range l.Agents {
		pw[a.PC] = a.Password
	}
	return &lane{srv: srv, layout: l, pw: pw, backend: nc, bjs: js}
}

// agent connects as pc with its own credential.
func (l *lane) agent(t *testing.T, pc string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(l.srv.ClientURL(), append([]nats.Option{nats.UserInfo(pc, l.pw[pc])}, opts...)...)
	if err != nil {
		t.Fatalf("connect as %s: %v", pc, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// violations collects the server's permission errors for one connection.
type violations struct {
	mu   sync.Mutex
	errs []string
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	v.errs = append(v.errs, err.Error())
	v.mu.Unlock()
}

// waitFor waits until a permission error naming subject arrives.
func (v *violations) waitFor(t *testing.T, op, subject string) {
	t.Helper()
	want := `permissions violation for ` + op + ` to "` + subject + `"`
	if strings.HasSuffix(op, " of") { // "publish with reply of"
		want = `permissions violation for ` + op + ` "` + subject + `"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		v.mu.Lock()
		for _, e := range v.errs {
			if strings.Contains(strings.ToLower(e), strings.ToLower(want)) {
				v.mu.Unlock()
				return
			}
		}
		v.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %q error; got %v", want, v.errs)
}
