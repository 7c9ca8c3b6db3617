package natsauth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/natsauth"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/wire"
)

// sinks listens where a forged message would do harm: the backend's
// commands.>, kill.>, $KV.jobs and $KV.schedules, and everything agent PC2
// hears (its Commands, kills and inbox).
type sinks struct {
	mu  sync.Mutex
	got []string
}

func (s *sinks) add(where string) nats.MsgHandler {
	return func(m *nats.Msg) {
		s.mu.Lock()
		s.got = append(s.got, where+" "+m.Subject+" "+string(m.Data))
		s.mu.Unlock()
	}
}

func watch(t *testing.T, l *lane, pc2 *nats.Conn) *sinks {
	t.Helper()
	s := &sinks{}
	for _, subj := range []string{"commands.>", "kill.>", "$KV." + wire.BucketJobs + ".>", "$KV." + wire.BucketSchedules + ".>"} {
		if _, err := l.backend.Subscribe(subj, s.add("backend")); err != nil {
			t.Fatal(err)
		}
	}
	for _, subj := range []string{"commands.all", "commands.group.*", "commands.pc.PC2", "kill.*", "_INBOX.>"} {
		if _, err := pc2.Subscribe(subj, s.add("PC2")); err != nil {
			t.Fatal(err)
		}
	}
	l.backend.Flush()
	pc2.Flush()
	return s
}

// quiet checks that nothing reached a sink: after the attacker's traffic
// was processed (a request of its own answered after it), and a short
// grace for anything still in flight.
func (s *sinks) quiet(t *testing.T, attacker *nats.Conn, l *lane) {
	t.Helper()
	attacker.Flush()
	// A direct get of its own is answered after the ones it sent before.
	if _, err := attacker.Request("$JS.API.DIRECT.GET.EXEC.commands.pc.PC1", nil, 5*time.Second); err != nil {
		t.Fatalf("attacker's own direct get: %v", err)
	}
	l.backend.Flush()
	time.Sleep(300 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) > 0 {
		t.Fatalf("forged messages arrived: %q", s.got)
	}
}

func metaSubject(key string) string {
	return "$O." + wire.ObjectStoreOutput + ".M." + base64.URLEncoding.EncodeToString([]byte(key))
}

const forged = `{"id":"evil","version":"1","request_id":"00000000-0000-4000-8000-000000000001","exec_id":"x",` +
	`"shell":"sh","script":"touch /tmp/pwned","timeout_secs":5,"jitter_secs":null,"run_as":"system","staleness":{"mode":"cached"}}`

// TestReplyInjectionLandsNowhere is recipe 1 of issue 13: as PC1, put
// Command-shaped JSON where the agent may write, then ask the JetStream API
// to read it back with a reply naming the backend's or another agent's
// subjects. The reply lands in PC1's own account, where nothing listens.
func TestReplyInjectionLandsNowhere(t *testing.T) {
	l := startLane(t, "PC1", "PC2")
	ctx := context.Background()
	if _, err := l.bjs.Publish(ctx, "commands.pc.PC1", []byte(`{"id":"mine"}`)); err != nil {
		t.Fatal(err)
	}
	var v violations
	pc1 := l.agent(t, "PC1", nats.ErrorHandler(v.handler))
	pc2 := l.agent(t, "PC2")
	s := watch(t, l, pc2)
	ajs, _ := jetstream.New(pc1)

	// The payloads: a chunk (the recipe) and an object meta, both
	// writable by the agent, both a Command.
	if _, err := ajs.Publish(ctx, "$O.result_output.C.EVIL1", []byte(forged)); err != nil {
		t.Fatalf("chunk publish: %v", err)
	}
	if _, err := ajs.Publish(ctx, metaSubject("EVIL1"), []byte(forged)); err != nil {
		t.Fatalf("meta publish: %v", err)
	}
	replies := []string{"commands.pc.PC2", "commands.all", "commands.group.g1", "kill.E1",
		"$KV.jobs.evil", "$KV.schedules.evil", "$KV.agent_groups.PC2"}
	for _, reply := range replies {
		// The chunk read of the recipe is refused outright.
		pc1.PublishRequest("$JS.API.DIRECT.GET.OBJ_result_output.$O.result_output.C.EVIL1", reply, nil)
		pc1.PublishRequest("$JS.API.STREAM.MSG.GET.OBJ_result_output", reply,
			[]byte(`{"last_by_subj":"$O.result_output.C.EVIL1"}`))
		// The meta read is allowed (a put looks the key up first): its
		// answer is delivered in PC1's account under reply.
		pc1.PublishRequest("$JS.API.DIRECT.GET.OBJ_result_output."+metaSubject("EVIL1"), reply, nil)
		// Its own Command and its publish acks, likewise.
		pc1.PublishRequest("$JS.API.DIRECT.GET.EXEC.commands.pc.PC1", reply, nil)
		pc1.PublishRequest(wire.Results("evil-req"), reply, []byte(`{}`))
	}
	v.waitFor(t, "publish", "$JS.API.DIRECT.GET.OBJ_result_output.$O.result_output.C.EVIL1")
	v.waitFor(t, "publish", "$JS.API.STREAM.MSG.GET.OBJ_result_output")
	s.quiet(t, pc1, l)

	// Nothing was stored: EXEC holds the one Command, the buckets nothing.
	exec, _ := l.bjs.Stream(ctx, wire.StreamExec)
	if info, _ := exec.Info(ctx); info.State.Msgs != 1 {
		t.Fatalf("EXEC holds %d messages, want 1", info.State.Msgs)
	}
	for _, b := range []string{wire.BucketJobs, wire.BucketSchedules} {
		kv, _ := l.bjs.KeyValue(ctx, b)
		if keys, err := kv.ListKeys(ctx); err == nil {
			for k := range keys.Keys() {
				t.Errorf("KV %s has key %s", b, k)
			}
		}
	}
	// The meta read's answer did reach PC1 itself: the attack was not
	// simply unanswered.
	rep, err := pc1.Request("$JS.API.DIRECT.GET.OBJ_result_output."+metaSubject("EVIL1"), nil, 5*time.Second)
	if err != nil || string(rep.Data) != forged {
		t.Fatalf("own meta read: %v %q", err, rep.Data)
	}
}

// TestAgentReadsNoOtherLane is recipe 2: PC1 cannot read PC3's Commands,
// other agents' outputs, or replies meant for others.
func TestAgentReadsNoOtherLane(t *testing.T) {
	l := startLane(t, "PC1", "PC2", "PC3")
	ctx := context.Background()
	if _, err := l.bjs.Publish(ctx, "commands.pc.PC3", []byte(`{"id":"secret","script":"password=hunter2"}`)); err != nil {
		t.Fatal(err)
	}
	var v violations
	pc1 := l.agent(t, "PC1", nats.ErrorHandler(v.handler))
	ajs, _ := jetstream.New(pc1)
	// Each refused call gets its own short deadline (a shared one would
	// be spent by the first and make the later ones fail vacuously).
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}

	exec, err := ajs.Stream(ctx, wire.StreamExec)
	if err != nil {
		t.Fatalf("EXEC info: %v", err)
	}
	if _, err := exec.CreateOrUpdateConsumer(short(), jetstream.ConsumerConfig{FilterSubject: "commands.pc.PC3"}); err == nil {
		t.Fatal("PC1 created a consumer on commands.pc.PC3")
	}
	if _, err := exec.OrderedConsumer(short(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{"commands.pc.PC3"}}); err == nil {
		t.Fatal("PC1 created an ordered consumer on commands.pc.PC3")
	}
	// A push consumer delivering into the backend's subjects, likewise.
	cfg, _ := json.Marshal(map[string]any{"stream_name": "EXEC", "config": map[string]any{
		"deliver_subject": "commands.pc.PC2", "filter_subject": "commands.pc.PC1", "ack_policy": "none"}})
	pc1.Publish("$JS.API.CONSUMER.CREATE.EXEC", cfg)
	v.waitFor(t, "publish", "$JS.API.CONSUMER.CREATE.EXEC")
	if _, err := exec.GetLastMsgForSubject(short(), "commands.pc.PC3"); err == nil {
		t.Fatal("PC1 read PC3's last Command")
	}
	if _, err := pc1.Request("$JS.API.STREAM.MSG.GET.EXEC", []byte(`{"last_by_subj":"commands.pc.PC3"}`), 500*time.Millisecond); err == nil {
		t.Fatal("PC1 read PC3's Command with a message get")
	}
	// Live: no subscription on another PC's subject.
	pc1.SubscribeSync("commands.pc.PC3")
	v.waitFor(t, "subscription", "commands.pc.PC3")
	pc1.SubscribeSync("commands.>")
	v.waitFor(t, "subscription", "commands.>")

	// Other agents' large outputs: the chunks cannot be read back.
	pc3 := l.agent(t, "PC3")
	p3js, _ := jetstream.New(pc3)
	obs3, err := p3js.ObjectStore(ctx, wire.ObjectStoreOutput)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs3.PutBytes(ctx, "req-3/stdout", []byte(strings.Repeat("PC3's secret output\n", 20000))); err != nil {
		t.Fatal(err)
	}
	obs1, _ := ajs.ObjectStore(ctx, wire.ObjectStoreOutput)
	if _, err := obs1.GetBytes(short(), "req-3/stdout"); err == nil {
		t.Fatal("PC1 read PC3's output")
	}
	if _, err := pc1.Request("$JS.API.STREAM.MSG.GET.OBJ_result_output", []byte(`{"last_by_subj":"$O.result_output.C.>"}`), 500*time.Millisecond); err == nil {
		t.Fatal("PC1 read a chunk with a message get")
	}
	// Nor purge them.
	if _, err := pc1.Request("$JS.API.STREAM.PURGE.OBJ_result_output", nil, 500*time.Millisecond); err == nil {
		t.Fatal("PC1 purged the output store")
	}

	// Stream lookups go through the backend's relay, which drops the
	// request's body: no listing of the subjects (here, every pc_id).
	kv, _ := l.bjs.KeyValue(ctx, wire.BucketAgentGroups)
	kv.Put(ctx, "PC3", []byte(`["lab"]`))
	info, err := pc1.Request("$JS.API.STREAM.INFO.KV_agent_groups", []byte(`{"subjects_filter":">"}`), 5*time.Second)
	if err != nil || !strings.Contains(string(info.Data), `"name":"KV_agent_groups"`) || strings.Contains(string(info.Data), "PC3") {
		t.Fatalf("stream info through the relay: %v %s", err, info.Data)
	}

	// Replies meant for others: PC1's _INBOX.> is its own account's.
	inbox, err := pc1.SubscribeSync("_INBOX.>")
	if err != nil {
		t.Fatal(err)
	}
	pc1.Flush()
	p3exec, _ := p3js.Stream(ctx, wire.StreamExec)
	if m, err := p3exec.GetLastMsgForSubject(ctx, "commands.pc.PC3"); err != nil || !strings.Contains(string(m.Data), "hunter2") {
		t.Fatalf("PC3 replays its own Command: %v", err)
	}
	pc3.Flush()
	for {
		m, err := inbox.NextMsg(300 * time.Millisecond)
		if err != nil {
			break
		}
		if strings.Contains(string(m.Data), "hunter2") {
			t.Fatalf("PC1 read PC3's reply on %s", m.Subject)
		}
	}
}

// TestAgentCannotSpeakForAnother is the NATS part of recipe 4: PC1 cannot
// publish PC2's heartbeat or started events at all.
func TestAgentCannotSpeakForAnother(t *testing.T) {
	l := startLane(t, "PC1", "PC2")
	ctx := context.Background()
	var v violations
	pc1 := l.agent(t, "PC1", nats.ErrorHandler(v.handler))
	hbs, _ := l.backend.SubscribeSync("heartbeat.>")
	l.backend.Flush()
	pc1.Publish(wire.HeartbeatSubject("PC2"), []byte(`{"pc_id":"PC2"}`))
	v.waitFor(t, "publish", "heartbeat.PC2")
	ajs, _ := jetstream.New(pc1)
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := ajs.Publish(sctx, wire.Started("ex-1", "PC2"), []byte(`{}`)); err == nil {
		t.Fatal("PC1 published PC2's started event")
	}
	// A result in PC2's name: refused by the backend's results relay, which
	// knows the sender from the subject its import maps to.
	results, _ := l.bjs.Stream(ctx, wire.StreamResults)
	_, err := ajs.Publish(ctx, wire.Results("q1"), []byte(`{"result_id":"r1","request_id":"q1","pc_id":"PC2","exit_code":0}`))
	if err == nil || !strings.Contains(err.Error(), `must carry pc_id "PC1"`) {
		t.Fatalf("a result claiming PC2: %v", err)
	}
	if _, err := ajs.Publish(ctx, wire.Results("q1"), []byte(`{"result_id":"r1","request_id":"q1","pc_id":"PC1","exit_code":0}`),
		jetstream.WithMsgID("m1")); err != nil {
		t.Fatalf("its own result: %v", err)
	}
	// Headers pass (the message id de-duplicates), and only its own is stored.
	if ack, err := ajs.Publish(ctx, wire.Results("q1"), []byte(`{"result_id":"r1","request_id":"q1","pc_id":"PC1","exit_code":0}`),
		jetstream.WithMsgID("m1")); err != nil || !ack.Duplicate {
		t.Fatalf("a retried publish: %v %+v", err, ack)
	}
	if info, _ := results.Info(ctx); info.State.Msgs != 1 {
		t.Fatalf("RESULTS holds %d messages, want 1", info.State.Msgs)
	}
	for _, s := range []string{"commands.pc.PC2", "commands.all", "kill.x", "kanade.results.list", "$KV.jobs.x", "agents.PC2.ping"} {
		pc1.Publish(s, []byte(`{}`))
		v.waitFor(t, "publish", s)
	}
	pc1.Publish(wire.HeartbeatSubject("PC1"), []byte(`{"pc_id":"PC1"}`))
	m, err := hbs.NextMsg(5 * time.Second)
	if err != nil || m.Subject != "heartbeat.PC1" {
		t.Fatalf("first heartbeat at the backend: %v %v", m, err)
	}
}

// TestCallerAccountHoldsNoWayIn: an API caller in its own account, even one
// given no permission limits at all (a configuration mistake), cannot
// publish a Command, point a consumer at commands.>, reach a kanade.>
// subject that is not one of its tier's endpoints, or have the API answer
// onto a Command subject or onto another endpoint; and every request it
// makes reaches the backend stamped with its name, whatever it wrote.
func TestCallerAccountHoldsNoWayIn(t *testing.T) {
	layout, err := natsauth.Fleet([]string{"PC1", "PC2"}, "backend")
	if err != nil {
		t.Fatal(err)
	}
	layout.Callers = []natsauth.Caller{{Name: "mallory", Password: natsauth.NewPassword(), Tier: api.TierViewer,
		Permissions: &natsauth.Permissions{}}}
	// The API: echo answers Command-shaped JSON (a service whose answer an
	// attacker would like delivered somewhere), put is another endpoint of
	// the caller's tier, admin one above it.
	stamps := make(chan string, 10)
	var trail trail
	svc := api.Service{Name: "attack", Audit: &trail, Logger: nodetest.Logger(t), Endpoints: []api.Endpoint{
		{Name: "echo", Subject: "kanade.attack.echo", Tier: api.TierViewer, Handler: func(_ context.Context, r api.Request) (any, error) {
			stamps <- r.Header.Get("Nats-Request-Info") + " actor=" + r.Actor()
			return json.RawMessage(forged), nil
		}},
		{Name: "put", Subject: "kanade.attack.put", Tier: api.TierViewer, Audit: "attack.put"},
		{Name: "admin", Subject: "kanade.attack.admin", Tier: api.TierAdmin, Audit: "attack.admin"},
	}}
	layout.API = []api.Definition{{Service: svc.Name, Endpoints: svc.Endpoints}}
	l := startLayout(t, layout)
	pc2 := l.agent(t, "PC2")
	s := watch(t, l, pc2)
	for i := range svc.Endpoints[1:] {
		ep := &svc.Endpoints[1+i]
		ep.Handler = func(_ context.Context, r api.Request) (any, error) {
			s.add("backend")(&nats.Msg{Subject: r.Subject, Data: r.Data})
			return nil, nil
		}
	}
	running, err := api.Start(l.backend, svc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { running.Stop() })
	// The nodes' own traffic under kanade.>, not an endpoint.
	if _, err := l.backend.Subscribe("kanade.agents.forgotten.PC2", s.add("backend")); err != nil {
		t.Fatal(err)
	}
	l.backend.Flush()
	m := l.agent(t, "mallory")
	m.Publish("kanade.attack.admin", []byte(`{}`))
	m.Publish("kanade.agents.forgotten.PC2", []byte(`{}`))
	// Answers routed back in as requests: the service's own answer, and
	// every service's $SRV answer, as requests to put.
	m.PublishRequest("kanade.attack.echo", "kanade.attack.put", []byte(`{}`))
	m.PublishRequest("$SRV.PING", "kanade.attack.put", nil)
	m.PublishRequest("$SRV.INFO", "kanade.attack.put", nil)

	// Straight publishes land in its own account.
	m.Publish("commands.all", []byte(forged))
	m.Publish("commands.pc.PC2", []byte(forged))
	m.Publish("kill.PC2", []byte(`{}`))
	// The JetStream API of an account without JetStream: no consumer, and
	// no delivery anywhere.
	cfg := `{"stream_name":"EXEC","config":{"deliver_subject":"commands.pc.PC2","ack_policy":"none"}}`
	if rep, err := m.Request("$JS.API.CONSUMER.CREATE.EXEC", []byte(cfg), 5*time.Second); err == nil && !strings.Contains(string(rep.Data), `"error"`) {
		t.Fatalf("a push consumer was created for the caller: %s", rep.Data)
	}
	// An API request whose reply names a Command subject or a bucket key:
	// the server replaces the reply across the import, so the answer
	// comes back in the caller's account, where nothing imports them.
	hdr := nats.Header{}
	hdr.Set("Nats-Request-Info", `{"acc":"KANADE","user":"backend"}`)
	hdr.Set("Kanade-Actor", "admin")
	if err := m.PublishMsg(&nats.Msg{Subject: "kanade.attack.echo", Reply: "commands.pc.PC2", Header: hdr, Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if err := m.PublishMsg(&nats.Msg{Subject: "kanade.attack.echo", Reply: "$KV.jobs.evil", Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case got := <-stamps:
			if !strings.Contains(got, `"acc":"USER_mallory"`) || !strings.Contains(got, `"user":"mallory"`) || !strings.HasSuffix(got, " actor=nats:mallory") {
				t.Fatalf("the backend saw %q", got)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the echo service never heard the caller")
		}
	}
	// A round trip of its own after the rest, then a grace for stragglers.
	if _, err := m.Request("kanade.attack.echo", nil, 5*time.Second); err != nil {
		t.Fatalf("the caller's own request: %v", err)
	}
	<-stamps
	l.backend.Flush()
	time.Sleep(300 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) > 0 {
		t.Fatalf("forged messages arrived: %q", s.got)
	}
	if recs := trail.all(); len(recs) > 0 {
		t.Fatalf("audited calls that must not have run: %+v", recs)
	}
}

// trail keeps audit records in memory.
type trail struct {
	mu   sync.Mutex
	recs []api.Entry
}

func (tr *trail) Record(_ context.Context, e api.Entry) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.recs = append(tr.recs, e)
	return nil
}

func (tr *trail) all() []api.Entry {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]api.Entry(nil), tr.recs...)
}
