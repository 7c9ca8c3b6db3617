package natsauth

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

var update = flag.Bool("update", false, "rewrite example.conf from exampleUsers")

// exampleUsers is the documented example: one user per role. Real
// deployments generate one agent entry per PC and use bcrypt hashes.
func exampleUsers(t *testing.T) []User {
	t.Helper()
	var users []User
	users = append(users, User{Name: "backend", Password: "backend-secret",
		Comment: "backend: everything (other backend nodes, admin tools)"})
	op := Operator()
	users = append(users, User{Name: "operator", Password: "operator-secret", Permissions: &op,
		Comment: "operator: the kanade.> API, $SRV discovery, reading streams.\nUse: nats --user operator --password ... --inbox-prefix " + OperatorInboxPrefix})
	for _, pc := range []string{"PC1", "PC2"} {
		p, err := Agent(pc)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, User{Name: pc, Password: strings.ToLower(pc) + "-secret", Permissions: &p,
			Comment: "agent " + pc + ": its own results, events and heartbeat; its Commands, kills, tail and ping"})
	}
	return users
}

func TestExampleConfigIsGenerated(t *testing.T) {
	got, err := Render(exampleUsers(t))
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
		t.Fatalf("example.conf is not what Render writes; run go test ./natsauth -run Example -update\n%s", got)
	}
}

func TestRenderRejects(t *testing.T) {
	if _, err := Agent("PC.1"); err == nil {
		t.Error("a pc_id with a dot was accepted")
	}
	if _, err := Render([]User{{Name: "a", Password: "x"}, {Name: "a", Password: "y"}}); err == nil {
		t.Error("a duplicate user was accepted")
	}
	if _, err := Render([]User{{Name: "a"}}); err == nil {
		t.Error("a user without a password was accepted")
	}
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

func TestPermissionsOfTheThreeRoles(t *testing.T) {
	dir := t.TempDir()
	srv, err := embedded.Start(embedded.Options{
		StoreDir:   filepath.Join(dir, "nats"),
		Listen:     "127.0.0.1:0",
		Sync:       embedded.SyncInterval,
		Logger:     nodetest.Logger(t),
		ConfigFile: "example.conf",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	ctx := context.Background()

	// The backend's in-process connection needs no user and has every right.
	backend, err := srv.Connect("backend")
	if err != nil {
		t.Fatalf("in-process connection under --nats-config: %v", err)
	}
	defer backend.Close()
	bjs, _ := jetstream.New(backend)
	if err := streams.Ensure(ctx, bjs, 1, nodetest.Logger(t)); err != nil {
		t.Fatalf("streams as the internal user: %v", err)
	}
	// A stand-in API endpoint and a Commands listener on the backend side.
	api, err := backend.Subscribe("kanade.results.list", func(m *nats.Msg) { m.Respond([]byte("[]")) })
	if err != nil {
		t.Fatal(err)
	}
	defer api.Unsubscribe()
	cmds, err := backend.SubscribeSync("commands.>")
	if err != nil {
		t.Fatal(err)
	}
	hbs, err := backend.SubscribeSync("heartbeat.>")
	if err != nil {
		t.Fatal(err)
	}
	backend.Flush()

	// Nobody gets in without a user, and the internal user is not usable
	// from the network.
	if nc, err := nats.Connect(srv.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("anonymous TCP connection accepted")
	}
	if nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(embedded.InternalUser, "guess")); err == nil {
		nc.Close()
		t.Fatal("internal user accepted over TCP")
	}

	var av violations
	agent, err := nats.Connect(srv.ClientURL(), nats.UserInfo("PC1", "pc1-secret"), nats.ErrorHandler(av.handler))
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()

	t.Run("agent refused on the API", func(t *testing.T) {
		_, err := agent.Request("kanade.results.list", []byte(`{}`), 500*time.Millisecond)
		if err == nil {
			t.Fatal("agent called kanade.results.list")
		}
		av.waitFor(t, "publish", "kanade.results.list")
	})
	t.Run("agent refused on commands", func(t *testing.T) {
		for _, s := range []string{"commands.all", "commands.pc.PC2"} {
			if err := agent.Publish(s, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			av.waitFor(t, "publish", s)
		}
		agent.Flush()
		backend.Flush()
		if m, err := cmds.NextMsg(200 * time.Millisecond); err == nil {
			t.Fatalf("backend received the agent's %s", m.Subject)
		}
		ajs, _ := jetstream.New(agent)
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := ajs.Publish(sctx, "commands.all", []byte(`{}`)); err == nil {
			t.Fatal("agent's JetStream publish to commands.all was acked")
		}
	})
	t.Run("agent publishes its results, events and heartbeat", func(t *testing.T) {
		ajs, _ := jetstream.New(agent)
		if _, err := ajs.Publish(ctx, wire.Results("req-1"), []byte(`{"result_id":"r1","request_id":"req-1","pc_id":"PC1","exit_code":0}`)); err != nil {
			t.Fatalf("result publish: %v", err)
		}
		if _, err := ajs.Publish(ctx, wire.Started("ex-1", "PC1"), []byte(`{"result_id":"r1","pc_id":"PC1"}`)); err != nil {
			t.Fatalf("started publish: %v", err)
		}
		if err := agent.Publish(wire.HeartbeatSubject("PC1"), []byte(`{"pc_id":"PC1"}`)); err != nil {
			t.Fatal(err)
		}
		if m, err := hbs.NextMsg(5 * time.Second); err != nil || m.Subject != "heartbeat.PC1" {
			t.Fatalf("heartbeat not received: %v", err)
		}
		// Another PC's heartbeat and events are not its to send.
		agent.Publish(wire.HeartbeatSubject("PC2"), []byte(`{"pc_id":"PC2"}`))
		av.waitFor(t, "publish", "heartbeat.PC2")
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := ajs.Publish(sctx, wire.Started("ex-1", "PC2"), []byte(`{}`)); err == nil {
			t.Fatal("agent PC1 published PC2's started event")
		}
		// Large outputs go to the object store.
		obs, err := ajs.ObjectStore(ctx, wire.ObjectStoreOutput)
		if err != nil {
			t.Fatalf("agent opens the object store: %v", err)
		}
		big := bytes.Repeat([]byte("o"), 300<<10)
		if _, err := obs.PutBytes(ctx, wire.OutputObjectKey("req-1", "stdout"), big); err != nil {
			t.Fatalf("agent puts a large output: %v", err)
		}
		bobs, _ := bjs.ObjectStore(ctx, wire.ObjectStoreOutput)
		if got, err := bobs.GetBytes(ctx, wire.OutputObjectKey("req-1", "stdout")); err != nil || len(got) != len(big) {
			t.Fatalf("backend reads the output back: %d bytes, %v", len(got), err)
		}
		rs, _ := bjs.Stream(ctx, wire.StreamResults)
		if info, _ := rs.Info(ctx); info.State.Msgs != 1 {
			t.Fatalf("RESULTS holds %d messages, want 1", info.State.Msgs)
		}
	})
	t.Run("agent hears its commands and answers its tail", func(t *testing.T) {
		mine, err := agent.SubscribeSync("commands.pc.PC1")
		if err != nil {
			t.Fatal(err)
		}
		tail, err := agent.Subscribe("job.tail.PC1", func(m *nats.Msg) { m.Respond([]byte(`{"found":false}`)) })
		if err != nil {
			t.Fatal(err)
		}
		defer tail.Unsubscribe()
		agent.Flush()
		if _, err := bjs.Publish(ctx, "commands.pc.PC1", []byte(`{"id":"x"}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := mine.NextMsg(5 * time.Second); err != nil {
			t.Fatalf("agent did not receive its command: %v", err)
		}
		rep, err := backend.Request("job.tail.PC1", []byte(`{"result_id":"r1"}`), 5*time.Second)
		if err != nil || string(rep.Data) != `{"found":false}` {
			t.Fatalf("tail request to the agent: %v", err)
		}
		// Another PC's tail, and the backend's replies, are not its to read.
		if _, err := agent.SubscribeSync("job.tail.PC2"); err != nil {
			t.Fatal(err)
		}
		av.waitFor(t, "subscription", "job.tail.PC2")
	})

	t.Run("agent replays its commands and reads its groups", func(t *testing.T) {
		kv, err := bjs.KeyValue(ctx, wire.BucketAgentGroups)
		if err != nil {
			t.Fatal(err)
		}
		kv.Put(ctx, "PC1", []byte(`["lab"]`))
		kv.Put(ctx, "PC2", []byte(`["office"]`))
		ajs, _ := jetstream.New(agent)
		akv, err := ajs.KeyValue(ctx, wire.BucketAgentGroups)
		if err != nil {
			t.Fatalf("agent opens agent_groups: %v", err)
		}
		if e, err := akv.Get(ctx, "PC1"); err != nil || string(e.Value()) != `["lab"]` {
			t.Fatalf("agent reads its groups: %v", err)
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := akv.Get(sctx, "PC2"); err == nil {
			t.Fatal("agent PC1 read PC2's groups")
		}
		// The latest Command per subject, replayed on reconnect.
		s, err := ajs.Stream(ctx, wire.StreamExec)
		if err != nil {
			t.Fatalf("agent EXEC info: %v", err)
		}
		c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{"commands.all", "commands.pc.PC1"},
		})
		if err != nil {
			t.Fatalf("agent consumer on EXEC: %v", err)
		}
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil || m.Subject() != "commands.pc.PC1" {
			t.Fatalf("agent replays its command: %v", err)
		}
	})

	var ov violations
	op, err := nats.Connect(srv.ClientURL(), nats.UserInfo("operator", "operator-secret"),
		nats.CustomInboxPrefix(OperatorInboxPrefix), nats.ErrorHandler(ov.handler))
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	t.Run("operator calls the API and reads streams, publishes no commands", func(t *testing.T) {
		if rep, err := op.Request("kanade.results.list", []byte(`{}`), 5*time.Second); err != nil || string(rep.Data) != "[]" {
			t.Fatalf("operator API call: %v", err)
		}
		ojs, _ := jetstream.New(op)
		s, err := ojs.Stream(ctx, wire.StreamResults)
		if err != nil {
			t.Fatalf("operator stream info: %v", err)
		}
		c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Fatalf("operator ordered consumer: %v", err)
		}
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil || m.Subject() != "results.req-1" {
			t.Fatalf("operator reads RESULTS: %v", err)
		}
		op.Publish("commands.all", []byte(`{}`))
		ov.waitFor(t, "publish", "commands.all")
	})
	t.Run("backend user has every right", func(t *testing.T) {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("backend", "backend-secret"))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if _, err := nc.Request("kanade.results.list", nil, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		if _, err := js.Publish(ctx, "commands.all", []byte(`{"id":"x"}`)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFleetConfigLoads(t *testing.T) {
	users, err := Fleet([]string{"PC1", "PC2"}, "backend", "operator")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := Render(users)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "auth.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Sync: embedded.SyncInterval,
		Logger: nodetest.Logger(t), ConfigFile: path})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	pw := map[string]string{}
	for _, u := range users {
		pw[u.Name] = u.Password
	}
	if pw["PC1"] == pw["PC2"] || len(pw) != 4 {
		t.Fatalf("passwords not one per user: %v", pw)
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("PC1", pw["PC1"]))
	if err != nil {
		t.Fatalf("PC1 with its password: %v", err)
	}
	nc.Close()
	if nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("PC1", pw["PC2"])); err == nil {
		nc.Close()
		t.Fatal("PC1 logged in with PC2's password")
	}
}
