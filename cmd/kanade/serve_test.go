package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeLifecycle(t *testing.T) {
	dir := t.TempDir()
	p := startKanade(t, dir)

	if code, body := get(t, p.HTTP+"/health"); code != 200 || body != "ok" {
		t.Fatalf("/health: %d %q", code, body)
	}
	if code, body := get(t, p.HTTP+"/api/version"); code != 200 || !strings.Contains(body, `"version"`) {
		t.Fatalf("/api/version: %d %q", code, body)
	}

	nc, err := nats.Connect(p.NATS)
	if err != nil {
		t.Fatalf("connect over TCP: %v", err)
	}
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	for _, want := range streams.Configs(1) {
		s, err := js.Stream(ctx, want.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", want.Name, err)
		}
		if d := streams.Diff(s.CachedInfo().Config, want); len(d) > 0 {
			t.Errorf("stream %s differs from the contract: %v", want.Name, d)
		}
	}
	for _, b := range []string{wire.BucketJobs, wire.BucketSchedules, wire.BucketAgentGroups} {
		if _, err := js.KeyValue(ctx, b); err != nil {
			t.Errorf("kv %s: %v", b, err)
		}
	}
	if _, err := js.ObjectStore(ctx, wire.ObjectStoreOutput); err != nil {
		t.Errorf("object store: %v", err)
	}
	// An acked message must survive the restart.
	if _, err := js.Publish(ctx, wire.Results("req-1"), []byte(`{"request_id":"req-1","pc_id":"PC1"}`)); err != nil {
		t.Fatal(err)
	}
	nc.Close()

	// A second node on the same data dir refuses clearly.
	err, stderr := runKanade(t, 30*time.Second, "serve", "--data-dir", dir, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	if err == nil || !strings.Contains(stderr, "in use by another kanade") {
		t.Fatalf("second serve on the same dir: %v %q", err, stderr)
	}

	if err, took := p.stop(t); err != nil || took > 10*time.Second {
		t.Fatalf("SIGTERM: exit %v after %v", err, took)
	}
	if _, err := os.Stat(filepath.Join(dir, "kanade.db")); err != nil {
		t.Fatalf("store file: %v", err)
	}

	p = startKanade(t, dir)
	nc, err = nats.Connect(p.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = jetstream.New(nc)
	s, err := js.Stream(ctx, wire.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("after restart RESULTS has %d messages, want 1", n)
	}
	if err, _ := p.stop(t); err != nil {
		t.Fatalf("second stop: %v", err)
	}
}

func TestServeBadInput(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unwritable data dir", []string{"serve", "--data-dir", "/proc/kanade-data"}, "data dir"},
		{"unknown service", []string{"serve", "--services", "foo"}, "unknown service"},
		{"bad sync", []string{"serve", "--nats-sync", "never"}, "--nats-sync"},
		{"unknown subcommand", []string{"frobnicate"}, "unknown subcommand"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err, stderr := runKanade(t, 30*time.Second, c.args...)
			if err == nil || !strings.Contains(stderr, c.want) {
				t.Fatalf("want failure naming %q, got %v: %s", c.want, err, stderr)
			}
		})
	}
	t.Run("port in use", func(t *testing.T) {
		p := startKanade(t, t.TempDir())
		addr := strings.TrimPrefix(p.HTTP, "http://")
		err, stderr := runKanade(t, 30*time.Second, "serve", "--data-dir", t.TempDir(), "--http", addr, "--nats-listen", "127.0.0.1:0")
		if err == nil || !strings.Contains(stderr, "address already in use") {
			t.Fatalf("port in use: %v %s", err, stderr)
		}
		natsAddr := strings.TrimPrefix(p.NATS, "nats://")
		err, stderr = runKanade(t, 30*time.Second, "serve", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--nats-listen", natsAddr)
		if err == nil || !strings.Contains(stderr, "address already in use") {
			t.Fatalf("nats port in use: %v %s", err, stderr)
		}
	})
}

func TestVersion(t *testing.T) {
	err, _ := runKanade(t, 30*time.Second, "version")
	if err != nil {
		t.Fatal(err)
	}
}
