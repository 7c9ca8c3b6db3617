package natsauth_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/natsauth"
	"github.com/kanade-go/kanade/node"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

var update = flag.Bool("update", false, "rewrite example.conf from exampleLayout")

// exampleLayout is the documented example: the backend user, an operator
// (an API caller with the operator tier, in its own account) and two
// agents. Real deployments generate random passwords (or bcrypt hashes).
func exampleLayout(t *testing.T) natsauth.Layout {
	t.Helper()
	return natsauth.Layout{
		Backend: []natsauth.User{
			{Name: "backend", Password: "backend-secret", Comment: "backend: every right in the backend's account (other backend nodes, admin tools)"},
		},
		Callers: []natsauth.Caller{
			{Name: "operator", Password: "operator-secret", Tier: api.TierOperator,
				Comment: "operator: the operator tier of the kanade.> API, and $SRV discovery.\nUse: nats --user operator --password ... req kanade.results.list '{}'"},
		},
		API:    node.Definitions(),
		Agents: []natsauth.Agent{{PC: "PC1", Password: "pc1-secret"}, {PC: "PC2", Password: "pc2-secret"}},
	}
}

func TestExampleConfigIsGenerated(t *testing.T) {
	got, err := natsauth.Render(exampleLayout(t))
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("example.conf", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("example.conf")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		// The operator's subjects come from the endpoint definitions: a
		// new endpoint changes the example.
		t.Fatalf("example.conf is not what Render writes; run go test ./natsauth -run Example -update\n%s", got)
	}
}

func TestRenderRejects(t *testing.T) {
	for name, l := range map[string]natsauth.Layout{
		"a pc_id with a dot":     {Agents: []natsauth.Agent{{PC: "PC.1", Password: "x"}}},
		"a pc_id with a space":   {Agents: []natsauth.Agent{{PC: "PC 1", Password: "x"}}},
		"a duplicate user":       {Backend: []natsauth.User{{Name: "a", Password: "x"}, {Name: "a", Password: "y"}}},
		"an agent named as user": {Backend: []natsauth.User{{Name: "PC1", Password: "x"}}, Agents: []natsauth.Agent{{PC: "PC1", Password: "y"}}},
		"no password":            {Backend: []natsauth.User{{Name: "a"}}},
		"an agent, no password":  {Agents: []natsauth.Agent{{PC: "PC1"}}},
		// upstream names both replay consumers agent_replay_PC_1
		"one replay consumer for two": {Agents: []natsauth.Agent{{PC: "PC_1", Password: "x"}, {PC: "PC@1", Password: "y"}}},
	} {
		if _, err := natsauth.Render(l); err == nil {
			t.Errorf("%s was accepted", name)
		}
	}
	for name, c := range map[string]natsauth.Caller{
		"a caller name with a dot": {Name: "a.b", Password: "x", Tier: api.TierViewer},
		"a caller with no tier":    {Name: "a", Password: "x"},
		"a public caller":          {Name: "a", Password: "x", Tier: api.TierPublic},
	} {
		if _, err := natsauth.Render(natsauth.Layout{Callers: []natsauth.Caller{c}, API: node.Definitions()}); err == nil {
			t.Errorf("%s was accepted", name)
		}
	}
	if _, err := natsauth.Render(natsauth.Layout{Callers: []natsauth.Caller{{Name: "a", Password: "x", Tier: api.TierViewer}}}); err == nil {
		t.Error("callers without the API's definitions were accepted")
	}
	if _, err := natsauth.Fleet([]string{"PC1", "PC1"}, "backend"); err == nil {
		t.Error("a pc_id listed twice was accepted")
	}
}

// TestExampleConfig runs the documented example.conf: who gets in, and
// the operator's and backend user's rights in the backend account.
func TestExampleConfig(t *testing.T) {
	dir := t.TempDir()
	srv, err := embedded.Start(embedded.Options{StoreDir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:0",
		Sync: embedded.SyncInterval, Logger: nodetest.Logger(t), ConfigFile: "example.conf"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if srv.Account() != natsauth.BackendAccount {
		t.Fatalf("in-process connections join %q, want %q", srv.Account(), natsauth.BackendAccount)
	}
	if srv.OpenToAnonymous() {
		t.Fatal("the example config reported open to anonymous clients")
	}
	ctx := context.Background()
	backend, err := srv.Connect("backend")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	bjs, _ := jetstream.New(backend)
	if err := streams.Ensure(ctx, bjs, 1, nodetest.Logger(t)); err != nil {
		t.Fatalf("streams as the internal user: %v", err)
	}
	stopRelay, err := natsauth.Relay(backend, nodetest.Logger(t)) // as every node runs it
	if err != nil {
		t.Fatal(err)
	}
	defer stopRelay()
	seen := make(chan *nats.Msg, 10)
	sub, err := backend.Subscribe("kanade.results.list", func(m *nats.Msg) {
		select {
		case seen <- m:
		default:
		}
		m.Respond([]byte("[]"))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	backend.Flush()

	if nc, err := nats.Connect(srv.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("anonymous TCP connection accepted")
	}
	if nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(embedded.InternalUser, "guess")); err == nil {
		nc.Close()
		t.Fatal("internal user accepted over TCP")
	}
	if nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("PC1", "pc2-secret")); err == nil {
		nc.Close()
		t.Fatal("PC1 logged in with PC2's password")
	}

	// The agent: its result is acked and stored in the backend's RESULTS;
	// the API is not in its account.
	agent, err := nats.Connect(srv.ClientURL(), nats.UserInfo("PC1", "pc1-secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	ajs, _ := jetstream.New(agent)
	if _, err := ajs.Publish(ctx, wire.Results("req-1"), []byte(`{"result_id":"r1","request_id":"req-1","pc_id":"PC1","exit_code":0}`)); err != nil {
		t.Fatalf("agent result publish: %v", err)
	}
	if _, err := agent.Request("kanade.results.list", nil, 500*time.Millisecond); err == nil {
		t.Fatal("agent called kanade.results.list")
	}

	// The operator, alone in its account: its API calls reach the backend
	// stamped with its name, whatever it wrote itself; it has no
	// JetStream, so no stream to read and no consumer to point anywhere.
	var ov violations
	op, err := nats.Connect(srv.ClientURL(), nats.UserInfo("operator", "operator-secret"), nats.ErrorHandler(ov.handler))
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	req := nats.NewMsg("kanade.results.list")
	req.Header.Set("Nats-Request-Info", `{"acc":"KANADE","user":"backend"}`)
	req.Header.Set("Kanade-Actor", "admin")
	if rep, err := op.RequestMsg(req, 5*time.Second); err != nil || string(rep.Data) != "[]" {
		t.Fatalf("operator API call: %v", err)
	}
	if got := (<-seen).Header.Get("Nats-Request-Info"); !strings.Contains(got, `"user":"operator"`) || !strings.Contains(got, `"acc":"USER_operator"`) {
		t.Fatalf("the backend saw Nats-Request-Info %q", got)
	}
	ojs, _ := jetstream.New(op)
	if _, err := ojs.Stream(ctx, wire.StreamResults); err == nil {
		t.Fatal("the operator looked up RESULTS")
	}
	op.Publish("commands.all", []byte(`{}`))
	ov.waitFor(t, "publish", "commands.all")
	op.SubscribeSync("_INBOX_kanade.>")
	ov.waitFor(t, "subscription", "_INBOX_kanade.>")
	// Admin services and the accounts bucket (token secret, password
	// hashes) are not the operator's.
	op.Publish("kanade.accounts.create", []byte(`{"username":"x","password":"12345678","role":"admin"}`))
	ov.waitFor(t, "publish", "kanade.accounts.create")
	op.Publish("$JS.API.DIRECT.GET.KV_accounts.$KV.accounts.users", nil)
	ov.waitFor(t, "publish", "$JS.API.DIRECT.GET.KV_accounts.$KV.accounts.users")

	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("backend", "backend-secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Request("kanade.results.list", nil, 5*time.Second); err != nil {
		t.Fatalf("backend user on the API: %v", err)
	}
	if m := <-seen; m.Header.Get("Nats-Request-Info") != "" {
		t.Fatalf("a request within the backend account carried Nats-Request-Info %q", m.Header.Get("Nats-Request-Info"))
	}
	js, _ := jetstream.New(nc)
	if _, err := js.Publish(ctx, "commands.all", []byte(`{"id":"x"}`)); err != nil {
		t.Fatalf("backend user publishes a Command: %v", err)
	}
	if !strings.Contains(srv.ClientURL(), "127.0.0.1") {
		t.Fatalf("listener %s", srv.ClientURL())
	}
}

func TestAgentCredentials(t *testing.T) {
	creds, err := natsauth.AgentCredentials("example.conf")
	if err != nil {
		t.Fatal(err)
	}
	if len(creds) != 2 || creds["PC1"] != "pc1-secret" || creds["PC2"] != "pc2-secret" {
		t.Fatalf("credentials %v", creds)
	}
	if pcs := natsauth.SortedPCs(creds); len(pcs) != 2 || pcs[0] != "PC1" {
		t.Fatalf("pcs %v", pcs)
	}
}
