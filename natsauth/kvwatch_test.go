package natsauth_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/wire"
)

// TestKVWatchOwnKey: an agent watches its own agent_groups key as
// upstream agents do (get, then watch: an ordered push consumer delivering
// to its inbox) and sees the backend's changes as they happen.
func TestKVWatchOwnKey(t *testing.T) {
	l := startLane(t, "PC1", "PC2")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bkv, err := l.bjs.KeyValue(ctx, wire.BucketAgentGroups)
	if err != nil {
		t.Fatal(err)
	}
	bkv.Put(ctx, "PC1", []byte(`{"groups":["a"]}`))
	bkv.Put(ctx, "PC2", []byte(`{"groups":["secret"]}`))
	pc1 := l.agent(t, "PC1")
	js, _ := jetstream.New(pc1)
	kv, err := js.KeyValue(ctx, wire.BucketAgentGroups)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "PC1"); err != nil || string(e.Value()) != `{"groups":["a"]}` {
		t.Fatalf("get: %v", err)
	}
	w, err := kv.Watch(ctx, "PC1")
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Stop() // deletes its consumer, through the unwatch relay
	next := func() string {
		t.Helper()
		select {
		case e := <-w.Updates():
			if e == nil {
				return "<initial done>"
			}
			return e.Key() + " " + string(e.Value())
		case <-ctx.Done():
			t.Fatal("no watch update")
		}
		return ""
	}
	if got := next(); got != `PC1 {"groups":["a"]}` {
		t.Fatalf("first update %q", got)
	}
	if got := next(); got != "<initial done>" {
		t.Fatalf("then %q", got)
	}
	bkv.Put(ctx, "PC2", []byte(`{"groups":["secret2"]}`))
	bkv.Put(ctx, "PC1", []byte(`{"groups":["a","b"]}`))
	if got := next(); got != `PC1 {"groups":["a","b"]}` {
		t.Fatalf("change %q", got)
	}

	// What an ordered watch lives on: idle heartbeats reach the inbox it
	// named, and its flow control answers reach the backend's JetStream.
	var v violations
	raw := l.agent(t, "PC1", nats.ErrorHandler(v.handler))
	hb, _ := raw.SubscribeSync("_INBOX.hb.1")
	raw.Flush()
	rep, err := raw.Request("$JS.API.CONSUMER.CREATE.KV_agent_groups", []byte(`{"stream_name":"KV_agent_groups","config":{`+
		`"deliver_subject":"_INBOX.hb.1","filter_subject":"$KV.agent_groups.PC1","ack_policy":"none","flow_control":true,`+
		`"idle_heartbeat":500000000,"deliver_policy":"new","mem_storage":true}}`), 5*time.Second)
	if err != nil || !strings.Contains(string(rep.Data), `"deliver_subject":"_INBOX.hb.1"`) {
		t.Fatalf("create: %v %s", err, rep.Data)
	}
	m, err := hb.NextMsg(5 * time.Second)
	if err != nil || m.Header.Get("Status") != "100" {
		t.Fatalf("no heartbeat: %v %+v", err, m)
	}
	fcs, _ := l.backend.SubscribeSync("$JS.FC.KV_agent_groups.>")
	l.backend.Flush()
	raw.Publish("$JS.FC.KV_agent_groups.x.1", nil)
	if _, err := fcs.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("flow control answer did not reach the backend: %v (%v)", err, v.errs)
	}
}

// TestKVWatchAttacks: a watch cannot read another agent's key, the whole
// bucket, or deliver anywhere but the agent's own inbox.
func TestKVWatchAttacks(t *testing.T) {
	l := startLane(t, "PC1", "PC2")
	ctx := context.Background()
	bkv, _ := l.bjs.KeyValue(ctx, wire.BucketAgentGroups)
	bkv.Put(ctx, "PC2", []byte(`{"groups":["secret"]}`))
	var v violations
	pc1 := l.agent(t, "PC1", nats.ErrorHandler(v.handler))
	s := watch(t, l, l.agent(t, "PC2"))
	js, _ := jetstream.New(pc1)
	kv, err := js.KeyValue(ctx, wire.BucketAgentGroups)
	if err != nil {
		t.Fatal(err)
	}
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		t.Cleanup(cancel)
		return c
	}
	for _, keys := range []string{"PC2", "PC1.>", "PC2.*"} {
		if _, err := kv.Watch(short(), keys); err == nil {
			t.Errorf("PC1 watched %q", keys)
		}
	}
	raw := map[string]string{
		"into PC2's commands": `{"stream_name":"KV_agent_groups","config":{"deliver_subject":"commands.pc.PC2","filter_subject":"$KV.agent_groups.PC1","ack_policy":"none"}}`,
		"into the backend's":  `{"stream_name":"KV_agent_groups","config":{"deliver_subject":"$KV.jobs.x","filter_subject":"$KV.agent_groups.PC1","ack_policy":"none"}}`,
		"a wildcard inbox":    `{"stream_name":"KV_agent_groups","config":{"deliver_subject":"_INBOX.>","filter_subject":"$KV.agent_groups.PC1","ack_policy":"none"}}`,
		"pull":                `{"stream_name":"KV_agent_groups","config":{"filter_subject":"$KV.agent_groups.PC1","ack_policy":"none"}}`,
		"durable":             `{"stream_name":"KV_agent_groups","config":{"durable_name":"keep","deliver_subject":"_INBOX.x","filter_subject":"$KV.agent_groups.PC1"}}`,
		"queue":               `{"stream_name":"KV_agent_groups","config":{"deliver_group":"q","deliver_subject":"_INBOX.x","filter_subject":"$KV.agent_groups.PC1"}}`,
		"PC2's key":           `{"stream_name":"KV_agent_groups","config":{"deliver_subject":"_INBOX.x","filter_subjects":["$KV.agent_groups.PC1","$KV.agent_groups.PC2"]}}`,
		"another stream":      `{"stream_name":"EXEC","config":{"deliver_subject":"_INBOX.x","filter_subject":"commands.pc.PC2"}}`,
	}
	for name, body := range raw {
		rep, err := pc1.Request("$JS.API.CONSUMER.CREATE.KV_agent_groups", []byte(body), 5*time.Second)
		if err != nil || !strings.Contains(string(rep.Data), "kanade: watch of PC1") {
			t.Errorf("%s: %v %s", name, err, rep.Data)
		}
	}
	// Its own watch works, and what it delivers reaches no one else (PC2's
	// _INBOX.> is among the sinks).
	w, err := kv.Watch(ctx, "PC1")
	if err != nil {
		t.Fatalf("its own watch: %v", err)
	}
	bkv.Put(ctx, "PC1", []byte(`{"groups":["x"]}`))
	for e := range w.Updates() {
		if e != nil && string(e.Value()) == `{"groups":["x"]}` {
			break
		}
	}
	// No update of an existing watch (a consumer name is all it would
	// take to redirect another's): its own watch's name, with another inbox.
	var name string
	st, _ := l.bjs.Stream(ctx, "KV_agent_groups")
	for c := range st.ListConsumers(ctx).Info() {
		if c.Config.FilterSubject == "$KV.agent_groups.PC1" {
			name = c.Name
		}
	}
	if name == "" {
		t.Fatal("no watch of PC1 found")
	}
	rep, err := pc1.Request("$JS.API.CONSUMER.CREATE.KV_agent_groups."+name, []byte(`{"stream_name":"KV_agent_groups",`+
		`"config":{"name":"`+name+`","deliver_subject":"_INBOX.other","filter_subject":"$KV.agent_groups.PC1","ack_policy":"none"}}`), 5*time.Second)
	if err != nil || !strings.Contains(string(rep.Data), `already exists`) {
		t.Errorf("an update of watch %q: %v %s", name, err, rep.Data)
	}
	// A loop of creates is refused (20 a minute per agent and node; 45
	// so that a minute's turn inside the loop still exceeds it).
	refused := 0
	for i := range 45 {
		rep, err := pc1.Request("$JS.API.CONSUMER.CREATE.KV_agent_groups", []byte(fmt.Sprintf(`{"stream_name":"KV_agent_groups",`+
			`"config":{"deliver_subject":"_INBOX.rl.%d","filter_subject":"$KV.agent_groups.PC1","ack_policy":"none"}}`, i)), 5*time.Second)
		if err == nil && strings.Contains(string(rep.Data), "watches in a minute") {
			refused++
		}
	}
	if refused == 0 {
		t.Error("45 watches in a row were all created")
	}
	// Other buckets' consumers are not in its account at all.
	pc1.Publish("$JS.API.CONSUMER.CREATE.KV_accounts", []byte(`{}`))
	v.waitFor(t, "publish", "$JS.API.CONSUMER.CREATE.KV_accounts")
	s.quiet(t, pc1, l)
	// Nor the delete of another's watch: PC2's stays.
	pc2js, _ := jetstream.New(l.agent(t, "PC2"))
	kv2, _ := pc2js.KeyValue(ctx, wire.BucketAgentGroups)
	if _, err := kv2.Watch(ctx, "PC2"); err != nil {
		t.Fatal(err)
	}
	var pc2watch string
	for c := range st.ListConsumers(ctx).Info() {
		if c.Config.FilterSubject == "$KV.agent_groups.PC2" {
			pc2watch = c.Name
		}
	}
	rep, err = pc1.Request("$JS.API.CONSUMER.DELETE.KV_agent_groups."+pc2watch, nil, 5*time.Second)
	if err != nil || !strings.Contains(string(rep.Data), "has no watch") {
		t.Errorf("delete of PC2's watch: %v %s", err, rep.Data)
	}
	for c := range st.ListConsumers(ctx).Info() {
		if c.Name == pc2watch {
			pc2watch += " (still there)"
		}
	}
	if !strings.HasSuffix(pc2watch, " (still there)") {
		t.Errorf("PC2's watch is gone")
	}
	pc2watch = strings.TrimSuffix(pc2watch, " (still there)")
	// None of that made a consumer but its own watch, delivering to its
	// prefix.
	for c := range st.ListConsumers(ctx).Info() {
		if c.Name == pc2watch {
			continue
		}
		if !strings.HasPrefix(c.Config.DeliverSubject, "_kanade.agents.kv_deliver.PC1.") || c.Config.FilterSubject != "$KV.agent_groups.PC1" {
			t.Errorf("consumer %s on KV_agent_groups: %+v", c.Name, c.Config)
		}
	}
}

// TestKVWatchNarrowed: a watch (or key listing) of a whole bucket, as
// upstream's config supervisor does on agent_config (keys(), watch_all),
// shows the agent exactly the keys it may read, never another PC's.
func TestKVWatchNarrowed(t *testing.T) {
	l := startLane(t, "PC1", "PC2")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg, err := l.bjs.KeyValue(ctx, wire.BucketAgentConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"global", "groups.lab", "pcs.PC1", "pcs.PC2", "other"} {
		cfg.Put(ctx, k, []byte(`{"k":"`+k+`"}`))
	}
	grp, _ := l.bjs.KeyValue(ctx, wire.BucketAgentGroups)
	grp.Put(ctx, "PC1", []byte(`{"groups":["lab"]}`))
	grp.Put(ctx, "PC2", []byte(`{"groups":["secret"]}`))
	pc1 := l.agent(t, "PC1")
	js, _ := jetstream.New(pc1)
	all := func(bucket string) []string {
		t.Helper()
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		w, err := kv.WatchAll(ctx)
		if err != nil {
			t.Fatalf("watch all %s: %v", bucket, err)
		}
		var got []string
		for e := range w.Updates() {
			if e == nil {
				break
			}
			got = append(got, e.Key())
		}
		slices.Sort(got)
		return got
	}
	if got := all(wire.BucketAgentConfig); !slices.Equal(got, []string{"global", "groups.lab", "pcs.PC1"}) {
		t.Fatalf("agent_config as PC1 sees it: %q", got)
	}
	if got := all(wire.BucketAgentGroups); !slices.Equal(got, []string{"PC1"}) {
		t.Fatalf("agent_groups as PC1 sees it: %q", got)
	}
	kv, _ := js.KeyValue(ctx, wire.BucketAgentConfig)
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range keys.Keys() {
		got = append(got, k)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"global", "groups.lab", "pcs.PC1"}) {
		t.Fatalf("agent_config keys as PC1 lists them: %q", got)
	}
	// Each listed key reads back with a get; a later change is seen.
	for _, k := range got {
		if _, err := kv.Get(ctx, k); err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
	}
	w, err := kv.Watch(ctx, "groups.*")
	if err != nil {
		t.Fatal(err)
	}
	for e := range w.Updates() {
		if e == nil {
			break
		}
	}
	cfg.Put(ctx, "pcs.PC2", []byte(`{"k":"again"}`))
	cfg.Put(ctx, "groups.lab", []byte(`{"k":"changed"}`))
	if e := <-w.Updates(); e == nil || e.Key() != "groups.lab" || string(e.Value()) != `{"k":"changed"}` {
		t.Fatalf("change: %v", e)
	}
}

// Upstream agents watch the whole catalog and the freeze (they tick
// runs_on: agent schedules and honour the freeze themselves): an agent on
// its own credential reads and watches them, but no other fleet_config key.
func TestAgentFollowsCatalogAndFreeze(t *testing.T) {
	l := startLane(t, "PC1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fleet, err := l.bjs.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "fleet_config"})
	if err != nil {
		t.Fatal(err)
	}
	fleet.Put(ctx, "freeze", []byte(`{"enabled":true}`))
	fleet.Put(ctx, "other", []byte(`x`))
	sched, err := l.bjs.KeyValue(ctx, wire.BucketSchedules)
	if err != nil {
		t.Fatal(err)
	}
	sched.Put(ctx, "nightly", []byte(`{"id":"nightly"}`))

	js, _ := jetstream.New(l.agent(t, "PC1"))
	akv, err := js.KeyValue(ctx, wire.BucketSchedules)
	if err != nil {
		t.Fatal(err)
	}
	w, err := akv.WatchAll(ctx)
	if err != nil {
		t.Fatalf("watch schedules: %v", err)
	}
	defer w.Stop()
	got := func() string {
		t.Helper()
		select {
		case e := <-w.Updates():
			if e == nil {
				return "<initial done>"
			}
			return e.Key() + " " + string(e.Value())
		case <-ctx.Done():
			t.Fatal("no watch update")
		}
		return ""
	}
	if g := got(); g != `nightly {"id":"nightly"}` {
		t.Fatalf("first update %q", g)
	}
	if g := got(); g != "<initial done>" {
		t.Fatalf("second update %q", g)
	}
	sched.Put(ctx, "weekly", []byte(`{"id":"weekly"}`))
	if g := got(); g != `weekly {"id":"weekly"}` {
		t.Fatalf("live update %q", g)
	}

	afleet, err := js.KeyValue(ctx, "fleet_config")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := afleet.Get(ctx, "freeze"); err != nil || string(e.Value()) != `{"enabled":true}` {
		t.Fatalf("freeze: %v", err)
	}
	// Refused by the permissions: no answer, so a short wait.
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	if e, err := afleet.Get(short, "other"); err == nil {
		t.Fatalf("read fleet_config/other: %q", e.Value())
	}
}
