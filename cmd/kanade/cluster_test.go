package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/natsauth"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/wire"
)

// TestServeWithNATSConfig runs a node under the documented permissions
// example: the node's own services still work (they connect in-process as
// the generated internal user), agents get only their rights.
func TestServeWithNATSConfig(t *testing.T) {
	p := startKanade(t, t.TempDir(), "--nats-config", "../../natsauth/example.conf")
	if code, body := get(t, p.HTTP+"/health"); code != 200 || body != "ok" {
		t.Fatalf("/health: %d %q", code, body)
	}
	// The gateway and the services talk over in-process connections.
	if code, body := get(t, p.HTTP+"/api/results?limit=1"); code != 200 {
		t.Fatalf("/api/results under --nats-config: %d %q", code, body)
	}
	op, err := nats.Connect(p.NATS, nats.UserInfo("operator", "operator-secret"), nats.CustomInboxPrefix(natsauth.OperatorInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	if _, err := op.Request("kanade.results.list", []byte(`{"limit":1}`), 10*time.Second); err != nil {
		t.Fatalf("operator API call: %v", err)
	}
	if nc, err := nats.Connect(p.NATS); err == nil {
		nc.Close()
		t.Fatal("anonymous connection accepted under --nats-config")
	}
	agent, err := nats.Connect(p.NATS, nats.UserInfo("PC1", "pc1-secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	js, _ := jetstream.New(agent)
	// The stream exists (the node made it as the internal user) and takes
	// the agent's result.
	if _, err := js.Publish(context.Background(), wire.Results("req-1"), []byte(`{"request_id":"req-1","pc_id":"PC1"}`)); err != nil {
		t.Fatalf("agent result publish: %v", err)
	}
	if _, err := agent.Request("kanade.results.list", nil, time.Second); err == nil {
		t.Fatal("agent called kanade.results.list")
	}
}

// TestNATSUsersConfigServes: the users `kanade nats-users` prints are a
// configuration `serve --nats-config` runs with.
func TestNATSUsersConfigServes(t *testing.T) {
	dir := t.TempDir()
	pcs := filepath.Join(dir, "pcs.txt")
	if err := os.WriteFile(pcs, []byte("# fleet\nPC7\n\nPC8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary(t), "nats-users", "--agents", "PC9", "--agents-file", pcs).Output()
	if err != nil {
		t.Fatalf("nats-users: %v", err)
	}
	conf := filepath.Join(dir, "auth.conf")
	if err := os.WriteFile(conf, out, 0o600); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\{user: "PC8", password: "([0-9a-f]+)"`).FindSubmatch(out)
	if m == nil || !strings.Contains(string(out), `"PC7"`) || !strings.Contains(string(out), `"PC9"`) {
		t.Fatalf("no users PC7, PC8, PC9 in:\n%s", out)
	}
	p := startKanade(t, t.TempDir(), "--nats-config", conf)
	nc, err := nats.Connect(p.NATS, nats.UserInfo("PC8", string(m[1])))
	if err != nil {
		t.Fatalf("PC8 with its generated password: %v", err)
	}
	nc.Close()
}

// TestClusterNodeAloneWaitsAndStops: a clustered node whose peers are not
// up waits for them, and SIGTERM meanwhile stops it cleanly.
func TestClusterNodeAloneWaitsAndStops(t *testing.T) {
	addrs := nodetest.FreeAddrs(t, 2)
	p := launchKanade(t, t.TempDir(), "--node-name", "alone", "--cluster-listen", addrs[0],
		"--cluster-routes", "nats://"+addrs[0]+",nats://"+addrs[1], "--replicas", "3")
	waitUntil(t, "waiting for the meta leader", 30*time.Second, func() (bool, string) {
		return strings.Contains(p.Stderr(), "waiting for the cluster's JetStream meta leader"), ""
	})
	if err, _ := p.stop(t); err != nil {
		t.Fatalf("SIGTERM while waiting for peers: %v\n%s", err, p.Stderr())
	}
}
