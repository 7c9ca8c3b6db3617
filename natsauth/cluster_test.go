package natsauth_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/natsauth"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// TestLaneOnAThreeNodeCluster: the generated configuration on three
// clustered embedded servers (the same file on each): the backend account
// holds the replicated streams, an agent on one node publishes and
// replays through another node's JetStream, and its answers reach the
// backend from any node.
func TestLaneOnAThreeNodeCluster(t *testing.T) {
	l, _ := natsauth.Fleet([]string{"PC1"}, "backend")
	l.API = []api.Definition{{Service: "x", Endpoints: []api.Endpoint{{Name: "list", Subject: "kanade.results.list", Tier: api.TierViewer}}}}
	l.Callers = []natsauth.Caller{{Name: "vic", Password: "vic-secret", Tier: api.TierViewer}}
	conf, err := natsauth.Render(l)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "auth.conf")
	os.WriteFile(path, []byte(conf), 0o600)
	routes := nodetest.FreeAddrs(t, 3)
	var urls []string
	for _, r := range routes {
		urls = append(urls, "nats://"+r)
	}
	var srvs []*embedded.Server
	for i := range 3 {
		s, err := embedded.Start(embedded.Options{StoreDir: filepath.Join(t.TempDir(), "nats"), Listen: "127.0.0.1:0",
			ServerName: fmt.Sprintf("kanade-n%d", i), Sync: embedded.SyncInterval, Logger: nodetest.Logger(t),
			ConfigFile: path, Cluster: embedded.Cluster{Listen: routes[i], Routes: urls, Name: "lane"}})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Shutdown()
		srvs = append(srvs, s)
	}
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := srvs[0].WaitJetStream(wctx); err != nil {
		t.Fatal(err)
	}
	backend, err := srvs[0].Connect("backend")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	relay, err := natsauth.Relay(backend, nodetest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer relay()
	bjs, _ := jetstream.New(backend)
	for {
		ectx, ecancel := context.WithTimeout(ctx, 10*time.Second)
		err := streams.Ensure(ectx, bjs, 3, nodetest.Logger(t))
		ecancel()
		if err == nil {
			break
		}
		if wctx.Err() != nil {
			t.Fatalf("streams: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if _, err := bjs.Publish(ctx, wire.CommandsPC("PC1"), []byte(`{"id":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if err := srvs[2].WaitStreamsCurrent(wctx, srvs[2].Account(), wire.StreamExec, wire.StreamResults); err != nil {
		t.Fatal(err)
	}

	agent, err := nats.Connect(srvs[2].ClientURL(), nats.UserInfo("PC1", l.Agents[0].Password))
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	ajs, _ := jetstream.New(agent)
	if _, err := ajs.Publish(ctx, wire.Results("q1"), []byte(`{"pc_id":"PC1"}`)); err != nil {
		t.Fatalf("result from another node: %v", err)
	}
	exec, err := ajs.Stream(ctx, wire.StreamExec)
	if err != nil {
		t.Fatalf("EXEC lookup from another node: %v", err)
	}
	if m, err := exec.GetLastMsgForSubject(ctx, wire.CommandsPC("PC1")); err != nil || string(m.Data) != `{"id":"x"}` {
		t.Fatalf("replay from another node: %v", err)
	}
	// Upstream's replay through its durable consumer, and a watch of its
	// groups, created through the relay on another node.
	if got := replayOnce(t, agent, "PC1"); len(got) != 1 || got[0] != `commands.pc.PC1 {"id":"x"}` {
		t.Fatalf("replay consumer from another node: %q", got)
	}
	bkv, err := bjs.KeyValue(ctx, wire.BucketAgentGroups)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bkv.Put(ctx, "PC1", []byte(`{"groups":["g"]}`)); err != nil {
		t.Fatal(err)
	}
	akv, err := ajs.KeyValue(ctx, wire.BucketAgentGroups)
	if err != nil {
		t.Fatal(err)
	}
	w, err := akv.Watch(ctx, "PC1")
	if err != nil {
		t.Fatalf("watch from another node: %v", err)
	}
	if e := <-w.Updates(); e == nil || string(e.Value()) != `{"groups":["g"]}` {
		t.Fatalf("watch from another node: %v", e)
	}
	agent.Subscribe(wire.Ping("PC1"), func(m *nats.Msg) { m.Respond([]byte("pong")) })
	agent.Flush()
	var rep *nats.Msg
	for rep == nil {
		rep, err = backend.Request(wire.Ping("PC1"), nil, 2*time.Second)
		if err != nil && !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) {
			t.Fatal(err)
		}
		if wctx.Err() != nil {
			t.Fatalf("ping across nodes: %v", err)
		}
		if rep == nil {
			time.Sleep(50 * time.Millisecond) // the interest is still crossing the routes
		}
	}
	// An API caller on another node than the service's: stamped with its
	// name across the routes.
	stamps := make(chan string, 1)
	backend.Subscribe("kanade.results.list", func(m *nats.Msg) {
		select {
		case stamps <- m.Header.Get("Nats-Request-Info"):
		default:
		}
		m.Respond([]byte("[]"))
	})
	backend.Flush()
	vic, err := nats.Connect(srvs[1].ClientURL(), nats.UserInfo("vic", "vic-secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer vic.Close()
	for rep = nil; rep == nil; {
		rep, err = vic.Request("kanade.results.list", nil, 2*time.Second)
		if err != nil && !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) {
			t.Fatal(err)
		}
		if wctx.Err() != nil {
			t.Fatalf("caller across nodes: %v", err)
		}
	}
	if got := <-stamps; !strings.Contains(got, `"acc":"USER_vic"`) || !strings.Contains(got, `"user":"vic"`) {
		t.Fatalf("the service saw %q", got)
	}
}
