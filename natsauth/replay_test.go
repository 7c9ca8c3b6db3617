package natsauth_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/natsauth"
	"github.com/kanade-go/kanade/wire"
)

// replayConfig is the consumer upstream agents create on (re)connect
// (command_replay.rs): durable pull, explicit acks, last per subject,
// filtered on commands.all, their own commands.pc.{pc} and their groups.
func replayConfig(pc string, groups ...string) jetstream.ConsumerConfig {
	f := []string{wire.SubjectCommandsAll, wire.CommandsPC(pc)}
	for _, g := range slices.Sorted(slices.Values(groups)) {
		f = append(f, wire.CommandsGroup(g))
	}
	return jetstream.ConsumerConfig{Durable: natsauth.ReplayConsumer(pc), AckPolicy: jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy, FilterSubjects: f}
}

// replayOnce does what an upstream agent does on reconnect: stream info on
// EXEC, create-or-update its replay consumer, pull and ack every message.
// It returns the subjects and payloads received.
func replayOnce(t *testing.T, nc *nats.Conn, pc string, groups ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(ctx, wire.StreamExec)
	if err != nil {
		t.Fatalf("%s: EXEC info: %v", pc, err)
	}
	c, err := s.CreateOrUpdateConsumer(ctx, replayConfig(pc, groups...))
	if err != nil {
		t.Fatalf("%s: create or update its replay consumer: %v", pc, err)
	}
	if _, err := c.Info(ctx); err != nil {
		t.Fatalf("%s: its consumer's info: %v", pc, err)
	}
	var got []string
	for {
		batch, err := c.FetchNoWait(10)
		if err != nil {
			t.Fatalf("%s: fetch: %v", pc, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatalf("%s: ack: %v", pc, err)
			}
			got = append(got, m.Subject()+" "+string(m.Data()))
		}
		if err := batch.Error(); err != nil && err != jetstream.ErrNoMessages && err != nats.ErrTimeout {
			t.Fatalf("%s: batch: %v", pc, err)
		}
		if n == 0 {
			break
		}
	}
	slices.Sort(got)
	return got
}

// TestReplayConsumerLikeUpstream: an agent offline while Commands were
// published gets, on its own credential, the ones it missed through its
// durable replay consumer (and only its own), and once acked not again.
func TestReplayConsumerLikeUpstream(t *testing.T) {
	l := startLane(t, "PC1", "PC2")
	ctx := context.Background()
	pub := func(subject, id string) {
		t.Helper()
		if _, err := l.bjs.Publish(ctx, subject, []byte(`{"id":"`+id+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	// PC1 ran once before (its consumer exists), then went offline.
	pc1 := l.agent(t, "PC1")
	if got := replayOnce(t, pc1, "PC1", "lab"); len(got) != 0 {
		t.Fatalf("empty EXEC replayed %q", got)
	}
	pc1.Close()
	pub(wire.CommandsPC("PC1"), "missed-pc")
	pub(wire.CommandsGroup("lab"), "missed-group")
	pub(wire.CommandsGroup("other"), "not-its-group")
	pub(wire.SubjectCommandsAll, "missed-all")
	pub(wire.CommandsPC("PC2"), "for-pc2")

	pc1 = l.agent(t, "PC1")
	want := []string{`commands.all {"id":"missed-all"}`, `commands.group.lab {"id":"missed-group"}`, `commands.pc.PC1 {"id":"missed-pc"}`}
	if got := replayOnce(t, pc1, "PC1", "lab"); !slices.Equal(got, want) {
		t.Fatalf("PC1 replayed %q, want %q", got, want)
	}
	// Acked: the next reconnect replays nothing, until a new Command.
	if got := replayOnce(t, pc1, "PC1", "lab"); len(got) != 0 {
		t.Fatalf("acked Commands replayed again: %q", got)
	}
	pub(wire.CommandsPC("PC1"), "next")
	if got := replayOnce(t, pc1, "PC1", "lab"); !slices.Equal(got, []string{`commands.pc.PC1 {"id":"next"}`}) {
		t.Fatalf("PC1 replayed %q", got)
	}
	// A waiting pull (as upstream's endless messages stream) gets a
	// Command published after it was made, with heartbeats on the way.
	pjs, _ := jetstream.New(pc1)
	pc, err := pjs.Consumer(ctx, wire.StreamExec, natsauth.ReplayConsumer("PC1"))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := pc.Fetch(1, jetstream.FetchMaxWait(5*time.Second), jetstream.FetchHeartbeat(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(1500*time.Millisecond, func() { l.bjs.Publish(ctx, wire.SubjectCommandsAll, []byte(`{"id":"live"}`)) })
	m, ok := <-batch.Messages()
	if !ok || string(m.Data()) != `{"id":"live"}` {
		t.Fatalf("waiting pull: %v %v", ok, batch.Error())
	}
	m.Ack()
	// PC2's own consumer, created only now, gets PC2's and the last
	// broadcast.
	pc2 := l.agent(t, "PC2")
	if got := replayOnce(t, pc2, "PC2"); !slices.Equal(got, []string{`commands.all {"id":"live"}`, `commands.pc.PC2 {"id":"for-pc2"}`}) {
		t.Fatalf("PC2 replayed %q", got)
	}
	// The consumer in the backend account is the pull consumer asked for.
	exec, _ := l.bjs.Stream(ctx, wire.StreamExec)
	c, err := exec.Consumer(ctx, "agent_replay_PC1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := c.CachedInfo().Config; cfg.DeliverSubject != "" || cfg.AckPolicy != jetstream.AckExplicitPolicy ||
		!slices.Equal(cfg.FilterSubjects, []string{"commands.all", "commands.pc.PC1", "commands.group.lab"}) {
		t.Fatalf("PC1's consumer %+v", cfg)
	}
}

// TestReplayConsumerAttacks: with its credential, PC1 cannot create or
// change a consumer that reads beyond its lane or delivers anywhere, nor
// touch PC2's, and replies it names on its own pulls land in its own
// account.
func TestReplayConsumerAttacks(t *testing.T) {
	l := startLane(t, "PC1", "PC2")
	ctx := context.Background()
	pc2 := l.agent(t, "PC2")
	replayOnce(t, pc2, "PC2") // PC2's consumer exists, all acked
	if _, err := l.bjs.Publish(ctx, wire.CommandsPC("PC2"), []byte(`{"id":"pc2-secret"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.bjs.Publish(ctx, wire.CommandsPC("PC1"), []byte(`{"id":"pc1-own"}`)); err != nil {
		t.Fatal(err)
	}
	var v violations
	pc1 := l.agent(t, "PC1", nats.ErrorHandler(v.handler))
	s := watch(t, l, l.agent(t, "PC2"))
	js, _ := jetstream.New(pc1)
	exec, err := js.Stream(ctx, wire.StreamExec)
	if err != nil {
		t.Fatal(err)
	}
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, time.Second)
		t.Cleanup(cancel)
		return c
	}

	// Another PC's consumer: not in its account at all.
	if _, err := exec.CreateOrUpdateConsumer(short(), replayConfig("PC2")); err == nil {
		t.Fatal("PC1 created or updated PC2's replay consumer")
	}
	v.waitFor(t, "publish", "$JS.API.CONSUMER.CREATE.EXEC.agent_replay_PC2")
	if _, err := exec.Consumer(short(), "agent_replay_PC2"); err == nil {
		t.Fatal("PC1 looked up PC2's consumer")
	}
	// Its own name, but reading beyond its lane, or delivering somewhere.
	bad := map[string]func(*jetstream.ConsumerConfig){
		"PC2's Commands":    func(c *jetstream.ConsumerConfig) { c.FilterSubjects = append(c.FilterSubjects, "commands.pc.PC2") },
		"commands.>":        func(c *jetstream.ConsumerConfig) { c.FilterSubjects = []string{"commands.>"} },
		"commands.pc.*":     func(c *jetstream.ConsumerConfig) { c.FilterSubjects = []string{"commands.pc.*"} },
		"kill.*":            func(c *jetstream.ConsumerConfig) { c.FilterSubjects = []string{"kill.*"} },
		"no filter":         func(c *jetstream.ConsumerConfig) { c.FilterSubjects = nil },
		"one filter, PC2's": func(c *jetstream.ConsumerConfig) { c.FilterSubjects = nil; c.FilterSubject = "commands.pc.PC2" },
	}
	for name, f := range bad {
		cfg := replayConfig("PC1")
		f(&cfg)
		_, err := exec.CreateOrUpdateConsumer(short(), cfg)
		if err == nil || !strings.Contains(err.Error(), "kanade: replay consumer of PC1") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Raw requests: a push consumer into PC2's or the backend's subjects,
	// another durable name in the body, the filter in the subject.
	raw := map[string]string{
		"push":       `{"stream_name":"EXEC","config":{"durable_name":"agent_replay_PC1","deliver_subject":"commands.pc.PC2","filter_subject":"commands.pc.PC1","ack_policy":"none"}}`,
		"push group": `{"stream_name":"EXEC","config":{"durable_name":"agent_replay_PC1","deliver_group":"x","filter_subject":"commands.pc.PC1"}}`,
		"heartbeat":  `{"stream_name":"EXEC","config":{"durable_name":"agent_replay_PC1","idle_heartbeat":1000000000,"filter_subject":"commands.pc.PC1"}}`,
		"name":       `{"stream_name":"EXEC","config":{"durable_name":"agent_replay_PC2","filter_subject":"commands.pc.PC1"}}`,
		"stream":     `{"stream_name":"RESULTS","config":{"durable_name":"agent_replay_PC1","filter_subject":"commands.pc.PC1"}}`,
		"not JSON":   `{`,
	}
	for name, body := range raw {
		rep, err := pc1.Request("$JS.API.CONSUMER.CREATE.EXEC.agent_replay_PC1", []byte(body), 5*time.Second)
		if err != nil || !strings.Contains(string(rep.Data), "kanade: replay consumer of PC1") {
			t.Errorf("%s: %v %s", name, err, rep.Data)
		}
	}
	rep, err := pc1.Request("$JS.API.CONSUMER.CREATE.EXEC.agent_replay_PC1.commands.pc.PC2",
		[]byte(`{"stream_name":"EXEC","config":{"durable_name":"agent_replay_PC1","filter_subject":"commands.pc.PC2"}}`), 5*time.Second)
	if err != nil || !strings.Contains(string(rep.Data), "kanade: replay consumer of PC1") {
		t.Errorf("the filter in the subject: %v %s", err, rep.Data)
	}
	// None of that made a consumer.
	bexec, _ := l.bjs.Stream(ctx, wire.StreamExec)
	names := bexec.ConsumerNames(ctx)
	var got []string
	for n := range names.Name() {
		got = append(got, n)
	}
	if !slices.Equal(got, []string{"agent_replay_PC2"}) {
		t.Fatalf("EXEC consumers %q", got)
	}

	// Its real consumer, then pulls and acks naming PC2's consumer.
	own, err := exec.CreateOrUpdateConsumer(ctx, replayConfig("PC1"))
	if err != nil {
		t.Fatalf("its own replay consumer: %v", err)
	}
	pc1.PublishRequest("$JS.API.CONSUMER.MSG.NEXT.EXEC.agent_replay_PC2", pc1.NewRespInbox(), []byte(`{"batch":10}`))
	v.waitFor(t, "publish", "$JS.API.CONSUMER.MSG.NEXT.EXEC.agent_replay_PC2")
	pc1.Publish("$JS.ACK.EXEC.agent_replay_PC2.1.2.1.0.0", nil)
	v.waitFor(t, "publish", "$JS.ACK.EXEC.agent_replay_PC2.1.2.1.0.0")
	// Its own pulls with replies naming PC2's or the backend's subjects:
	// the messages land in PC1's own account, where nothing listens.
	for _, reply := range []string{"commands.pc.PC2", "commands.all", "kill.x", "$KV.jobs.x", "$KV.schedules.x"} {
		pc1.PublishRequest("$JS.API.CONSUMER.MSG.NEXT.EXEC.agent_replay_PC1", reply, []byte(`{"batch":10,"no_wait":true}`))
	}
	s.quiet(t, pc1, l)
	// JetStream looks for interest in a pull's reply in the requester's
	// own account, where nothing listens on those subjects (PC2 does, in
	// its account, and the backend, in its): the pulls delivered nothing,
	// and PC1's Command still waits in its consumer.
	info, err := own.Info(ctx)
	if err != nil || info.NumAckPending != 0 || info.NumPending != 1 || info.Delivered.Consumer != 0 {
		t.Fatalf("PC1's consumer after the pulls: %v %+v", err, info)
	}
	if got := replayOnce(t, pc1, "PC1"); !slices.Equal(got, []string{`commands.pc.PC1 {"id":"pc1-own"}`}) {
		t.Fatalf("PC1 replayed %q", got)
	}
	// A reply in $JS.ACK. is the one nats-server would pass across an
	// import unchanged (pull consumers in another account need it), and
	// would ack another consumer's message: the server refuses it from a
	// client, and the relays would not answer there either.
	acks, _ := l.backend.SubscribeSync("$JS.ACK.>")
	l.backend.Flush()
	body, _ := json.Marshal(map[string]any{"stream_name": "EXEC", "config": replayConfig("PC1")})
	const ack = "$JS.ACK.EXEC.agent_replay_PC2.1.3.2.0.0"
	pc1.PublishRequest("$JS.API.CONSUMER.CREATE.EXEC.agent_replay_PC1", ack, body)
	v.waitFor(t, "publish with reply of", ack)
	pc1.PublishRequest(wire.Results("q"), ack, []byte(`{"pc_id":"PC2"}`))
	pc1.PublishRequest("$JS.API.STREAM.INFO.EXEC", ack, nil)
	pc1.PublishRequest("$JS.API.DIRECT.GET.EXEC.commands.pc.PC1", ack, nil)
	s.quiet(t, pc1, l)
	if m, err := acks.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("an answer reached %s: %s", m.Subject, m.Data)
	}
	// PC2's consumer is untouched: its Command still waits for it.
	if got := replayOnce(t, pc2, "PC2"); !slices.Equal(got, []string{`commands.pc.PC2 {"id":"pc2-secret"}`}) {
		t.Fatalf("PC2 replayed %q", got)
	}
	// A loop of updates is refused (20 a minute per agent and node; 45 so
	// that a minute's turn inside the loop still exceeds it).
	refused := 0
	for range 45 {
		rep, err := pc1.Request("$JS.API.CONSUMER.CREATE.EXEC.agent_replay_PC1", body, 5*time.Second)
		if err == nil && strings.Contains(string(rep.Data), "in a minute") {
			refused++
		}
	}
	if refused == 0 {
		t.Error("45 updates in a row were all served")
	}
}
