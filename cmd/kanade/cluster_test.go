package main

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
}
