package node

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/gateway"
	"github.com/kanade-go/kanade/natsauth"
	"github.com/kanade-go/kanade/nodetest"
)

// TestSecurityWarnings: an open NATS on a non-loopback address, and an API
// token with NATS open, are said at start and in the node's status; the
// generated configuration, or loopback, says nothing.
func TestSecurityWarnings(t *testing.T) {
	start := func(listen, config string) *embedded.Server {
		srv, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Listen: listen, Sync: embedded.SyncInterval,
			Logger: nodetest.Logger(t), ConfigFile: config})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Shutdown)
		return srv
	}
	l, _ := natsauth.Fleet([]string{"PC1"}, "backend")
	conf, _ := natsauth.Render(l)
	path := filepath.Join(t.TempDir(), "auth.conf")
	os.WriteFile(path, []byte(conf), 0o600)
	token := Options{Gateway: gateway.Options{APIToken: "t"}}

	if w := securityWarnings(Options{}, start("0.0.0.0:0", "")); len(w) != 1 || !strings.Contains(w[0], "without credentials") {
		t.Errorf("open on 0.0.0.0: %q", w)
	}
	if w := securityWarnings(token, start("0.0.0.0:0", "")); len(w) != 2 || !strings.Contains(w[1], "--api-token protects HTTP only") {
		t.Errorf("open on 0.0.0.0 with a token: %q", w)
	}
	if w := securityWarnings(token, start("127.0.0.1:0", "")); len(w) != 1 || !strings.Contains(w[0], "--api-token") {
		t.Errorf("open on loopback with a token: %q", w)
	}
	if w := securityWarnings(Options{}, start("127.0.0.1:0", "")); len(w) != 0 {
		t.Errorf("open on loopback: %q", w)
	}
	if w := securityWarnings(Options{}, start("off", "")); len(w) != 0 {
		t.Errorf("in-process only: %q", w)
	}
	if w := securityWarnings(token, start("0.0.0.0:0", path)); len(w) != 0 {
		t.Errorf("generated config: %q", w)
	}
	if w := securityWarnings(Options{NATSURL: "nats://x:4222", Gateway: gateway.Options{APIToken: "t"}}, nil); len(w) != 1 {
		t.Errorf("external NATS without credentials and a token: %q", w)
	}

	// The node's status carries them.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan Ready, 1)
	go func() {
		done <- Run(ctx, Options{DataDir: t.TempDir(), NATSListen: "0.0.0.0:0", NATSSync: embedded.SyncInterval,
			NodeName: "w", Logger: nodetest.Logger(t), Services: []string{ServiceProjector}},
			func(r Ready) { ready <- r })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	}()
	var r Ready
	select {
	case r = <-ready:
	case err := <-done:
		t.Fatalf("node: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("node not ready")
	}
	nc, err := nats.Connect(strings.Replace(r.NATS, "0.0.0.0", "127.0.0.1", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	m, err := nc.Request(SubjectNodeStatus, nil, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var st NodeStatus
	if err := json.Unmarshal(m.Data, &st); err != nil || len(st.Warnings) != 1 {
		t.Fatalf("status %s: %v", m.Data, err)
	}
}
