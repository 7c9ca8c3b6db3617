package streams_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

func TestEnsureIsIdempotentAndKeepsForeignStreams(t *testing.T) {
	n := nodetest.Start(t) // already ran Ensure once
	js := n.JetStream(t)
	ctx := context.Background()

	// Data survives a second Ensure.
	if _, err := js.Publish(ctx, wire.Results("r1"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := streams.Ensure(ctx, js, 1, log); err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, wire.StreamResults)
	if s.CachedInfo().State.Msgs != 1 {
		t.Fatal("second Ensure lost data")
	}
	if logs.Len() != 0 {
		t.Fatalf("nothing differs, yet it logged: %s", logs.String())
	}

	// A stream made by someone else with other limits is kept, and the
	// difference is logged.
	cfg := s.CachedInfo().Config
	cfg.MaxAge = 24 * time.Hour
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := streams.Ensure(ctx, js, 1, log); err != nil {
		t.Fatal(err)
	}
	s, _ = js.Stream(ctx, wire.StreamResults)
	if s.CachedInfo().Config.MaxAge != 24*time.Hour || s.CachedInfo().State.Msgs != 1 {
		t.Fatal("existing stream was changed")
	}
	if !strings.Contains(logs.String(), "max_age") {
		t.Fatalf("difference not logged: %s", logs.String())
	}
}

func TestConfigsFollowTheContract(t *testing.T) {
	byName := map[string]jetstream.StreamConfig{}
	for _, c := range streams.Configs(3) {
		byName[c.Name] = c
		if c.Replicas != 3 {
			t.Errorf("%s replicas %d", c.Name, c.Replicas)
		}
	}
	exec := byName[wire.StreamExec]
	if exec.MaxMsgsPerSubject != 1 || exec.Subjects[0] != "commands.>" || exec.MaxAge != 7*24*time.Hour {
		t.Errorf("EXEC: %+v", exec)
	}
	if r := byName[wire.StreamResults]; r.MaxBytes != 2<<30 || r.MaxAge != 30*24*time.Hour || r.Discard != jetstream.DiscardOld {
		t.Errorf("RESULTS: %+v", r)
	}
	if e := byName[wire.StreamEvents]; e.MaxBytes != 256<<20 || e.MaxAge != 7*24*time.Hour {
		t.Errorf("EVENTS: %+v", e)
	}
}

// TestEnsureAllowsDirectGetsOnEXEC: an EXEC made without direct gets (an
// older node, upstream) gets them, the one change Ensure makes, with its
// Commands kept: agents in their own NATS accounts replay with them.
func TestEnsureAllowsDirectGetsOnEXEC(t *testing.T) {
	n := nodetest.Start(t)
	js := n.JetStream(t)
	ctx := context.Background()
	s, err := js.Stream(ctx, wire.StreamExec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, wire.CommandsPC("PC1"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := streams.Ensure(ctx, js, 1, n.Logger); err != nil {
		t.Fatal(err)
	}
	s, _ = js.Stream(ctx, wire.StreamExec)
	if !s.CachedInfo().Config.AllowDirect || s.CachedInfo().State.Msgs != 1 {
		t.Fatalf("EXEC allow_direct %v with %d messages", s.CachedInfo().Config.AllowDirect, s.CachedInfo().State.Msgs)
	}
}
