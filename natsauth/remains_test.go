package natsauth_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/wire"
)

// TestWhatRemains pins down, on a real server, what NATS does not
// separate (the README's list): if one of these starts failing, the
// server closed a gap and the README should say so.
func TestWhatRemains(t *testing.T) {
	l := startLane(t, "PC1", "PC2")
	ctx := context.Background()
	pc1 := l.agent(t, "PC1")
	ajs, _ := jetstream.New(pc1)

	// 1. A credential holder reaches its own agent: a reply it names lands
	// in its own account, where its agent's subscriptions are.
	own, _ := pc1.SubscribeSync(wire.CommandsPC("PC1"))
	pc1.Flush()
	if _, err := ajs.Publish(ctx, metaSubject("own"), []byte(forged)); err != nil {
		t.Fatal(err)
	}
	pc1.PublishRequest("$JS.API.DIRECT.GET.OBJ_result_output."+metaSubject("own"), wire.CommandsPC("PC1"), nil)
	if m, err := own.NextMsg(5 * time.Second); err != nil || string(m.Data) != forged {
		t.Fatalf("the reply did not reach the agent's own subscription: %v", err)
	}

	// 2. Every agent hears every group's Commands (membership is in KV,
	// the configuration is static).
	grp, _ := pc1.SubscribeSync(wire.CommandsGroup("not-mine"))
	pc1.Flush()
	l.bjs.Publish(ctx, wire.CommandsGroup("not-mine"), []byte(`{"id":"g"}`))
	if _, err := grp.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("group command not heard: %v", err)
	}
	// ... and replays them through its replay consumer.
	if got := replayOnce(t, pc1, "PC1", "not-mine"); !slices.Equal(got, []string{`commands.group.not-mine {"id":"g"}`}) {
		t.Fatalf("replay of another group: %q", got)
	}

	// ... and flow control answers of watches name no PC: PC1's reach
	// JetStream for any consumer on a bucket it reads.
	fcs, _ := l.backend.SubscribeSync("$JS.FC.KV_agent_groups.>")
	l.backend.Flush()
	pc1.Publish("$JS.FC.KV_agent_groups.someone-elses.1", nil)
	if _, err := fcs.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("flow control answer: %v", err)
	}

	// 3. Output objects are not bound to a PC: PC1 replaces PC2's.
	pc2 := l.agent(t, "PC2")
	j2, _ := jetstream.New(pc2)
	o2, _ := j2.ObjectStore(ctx, wire.ObjectStoreOutput)
	if _, err := o2.PutBytes(ctx, "req-2/stdout", []byte("PC2's output")); err != nil {
		t.Fatal(err)
	}
	o1, _ := ajs.ObjectStore(ctx, wire.ObjectStoreOutput)
	// Put fails at the end (the purge of the old chunks is not imported)
	// but the new meta is in place.
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	o1.PutBytes(pctx, "req-2/stdout", []byte("PC1's forgery"))
	bo, _ := l.bjs.ObjectStore(ctx, wire.ObjectStoreOutput)
	if b, err := bo.GetBytes(ctx, "req-2/stdout"); err != nil || string(b) != "PC1's forgery" {
		t.Fatalf("replaced object reads %q %v", b, err)
	}

	// 4. ... and a rollup header on any object subject empties the store.
	m := nats.NewMsg("$O.result_output.C.wipe")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupAll)
	if _, err := ajs.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := bo.GetBytes(ctx, "req-2/stdout"); err == nil {
		t.Fatal("the rollup left the object")
	}
}
