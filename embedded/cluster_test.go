package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/nodetest"
)

// createStream retries while the cluster elects its meta leader.
func createStream(t *testing.T, js jetstream.JetStream, cfg jetstream.StreamConfig) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := js.CreateStream(ctx, cfg)
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("create stream: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func TestThreeEmbeddedServersFormOneJetStreamCluster(t *testing.T) {
	routes := nodetest.FreeAddrs(t, 3)
	var urls []string
	for _, r := range routes {
		urls = append(urls, "nats://"+r)
	}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	start := func(i int) *embedded.Server {
		s, err := embedded.Start(embedded.Options{
			StoreDir:   filepath.Join(dirs[i], "nats"),
			Listen:     "127.0.0.1:0",
			ServerName: fmt.Sprintf("kanade-n%d", i),
			Sync:       embedded.SyncInterval,
			Logger:     nodetest.Logger(t),
			Cluster:    embedded.Cluster{Listen: routes[i], Routes: urls, Name: "test"},
		})
		if err != nil {
			t.Fatalf("start node %d: %v", i, err)
		}
		return s
	}
	var srvs []*embedded.Server
	for i := range 3 {
		srvs = append(srvs, start(i))
	}
	defer func() {
		for _, s := range srvs {
			if s != nil {
				s.Shutdown()
			}
		}
	}()
	if got := srvs[0].ClusterURL(); got != urls[0] {
		t.Fatalf("ClusterURL %q, want %q", got, urls[0])
	}

	nc, err := srvs[0].Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	createStream(t, js, jetstream.StreamConfig{Name: "R", Subjects: []string{"r.>"}, Replicas: 3, Storage: jetstream.FileStorage})
	ctx := context.Background()
	info, err := js.Stream(ctx, "R")
	if err != nil {
		t.Fatal(err)
	}
	ci := info.CachedInfo().Cluster
	if ci == nil || ci.Name != "test" || len(ci.Replicas) != 2 {
		t.Fatalf("stream R cluster info %+v: want cluster test with a leader and 2 replicas", ci)
	}

	publish := func(js jetstream.JetStream, n, from int) {
		t.Helper()
		for i := range n {
			var err error
			for try := 0; try < 100; try++ {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err = js.Publish(pctx, fmt.Sprintf("r.%d", from+i), []byte("x"), jetstream.WithMsgID(fmt.Sprint(from+i)))
				cancel()
				if err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("publish %d: %v", from+i, err)
			}
		}
	}
	publish(js, 50, 0)

	// Losing one of three keeps a quorum: publishing through a survivor
	// goes on, and the stopped node catches up when it comes back.
	srvs[2].Shutdown()
	srvs[2] = nil
	nc1, err := nats.Connect(srvs[1].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc1.Close()
	js1, _ := jetstream.New(nc1)
	publish(js1, 50, 50)

	srvs[2] = start(2)
	nc2, err := srvs[2].Connect("test-2")
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	// The stream's cluster info reports the restarted peer current: it
	// holds the messages published while it was down.
	js2, _ := jetstream.New(nc2)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var state string
		st, err := js2.Stream(ctx, "R")
		if err == nil {
			info, err := st.Info(ctx)
			if err == nil && info.Cluster != nil {
				peers := append([]*jetstream.PeerInfo{{Name: info.Cluster.Leader, Current: true}}, info.Cluster.Replicas...)
				for _, p := range peers {
					if p.Name == "kanade-n2" {
						state = fmt.Sprintf("current=%v lag=%d msgs=%d", p.Current, p.Lag, info.State.Msgs)
						if p.Current && p.Lag == 0 && info.State.Msgs == 100 {
							return
						}
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted node's replica not caught up: %s", state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestClusterOptionsRejectBadInput(t *testing.T) {
	if rs, err := embedded.ParseRoutes(" nats://h1:6222, nats://h2:6222 ,"); err != nil || len(rs) != 2 {
		t.Fatalf("ParseRoutes: %v %v", rs, err)
	}
	for _, bad := range []string{"h1:6222", "http://h1:6222", "nats://h1"} {
		if _, err := embedded.ParseRoutes(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("route %q: %v, want an error naming it", bad, err)
		}
	}
	_, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Logger: nodetest.Logger(t), Cluster: embedded.Cluster{Routes: []string{"nats://h1:6222"}}})
	if err == nil || !strings.Contains(err.Error(), "cluster listen") {
		t.Errorf("routes without a listener: %v", err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, err = embedded.Start(embedded.Options{StoreDir: t.TempDir(), Logger: nodetest.Logger(t), Cluster: embedded.Cluster{Listen: busy.Addr().String()}})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("busy cluster port: %v", err)
	}
}
