package natsauth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kanade-go/kanade/wire"
)

// TestUpstreamRequestShapes sends, as raw requests on an agent's
// credential, the JetStream API calls an upstream agent (async-nats) makes
// for command replay and its KV watches and listings, in the shape that
// client serializes them, and follows each through: the relay accepts
// them and the messages arrive where that client listens.
func TestUpstreamRequestShapes(t *testing.T) {
	l := startLane(t, "PC1", "PC2")
	ctx := context.Background()
	if _, err := l.bjs.Publish(ctx, wire.CommandsPC("PC1"), []byte(`{"id":"missed"}`)); err != nil {
		t.Fatal(err)
	}
	grp, _ := l.bjs.KeyValue(ctx, wire.BucketAgentGroups)
	grp.Put(ctx, "PC1", []byte(`{"groups":["lab"]}`))
	cfg, _ := l.bjs.KeyValue(ctx, wire.BucketAgentConfig)
	cfg.Put(ctx, "global", []byte(`{}`))
	cfg.Put(ctx, "pcs.PC2", []byte(`{"secret":true}`))
	pc1 := l.agent(t, "PC1")
	req := func(subject, body string) string {
		t.Helper()
		rep, err := pc1.Request(subject, []byte(body), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		if strings.Contains(string(rep.Data), `"error"`) {
			t.Fatalf("%s: %s", subject, rep.Data)
		}
		return string(rep.Data)
	}
	// get_stream, then create_consumer of the replay consumer
	// (pull::Config into consumer::Config, defaults skipped).
	req("$JS.API.STREAM.INFO.EXEC", "")
	req("$JS.API.CONSUMER.CREATE.EXEC.agent_replay_PC1", `{"stream_name":"EXEC","config":{"durable_name":"agent_replay_PC1",`+
		`"deliver_policy":"last_per_subject","ack_policy":"explicit","filter_subjects":["commands.all","commands.pc.PC1","commands.group.lab"],`+
		`"replay_policy":"instant"},"action":""}`)
	// messages(): batch requests with expires and idle heartbeats.
	pulls, _ := pc1.SubscribeSync("_INBOX.pull.*")
	pc1.PublishRequest("$JS.API.CONSUMER.MSG.NEXT.EXEC.agent_replay_PC1", "_INBOX.pull.1",
		[]byte(`{"batch":200,"expires":30000000000,"max_bytes":0,"idle_heartbeat":15000000000}`))
	m, err := pulls.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != `{"id":"missed"}` || m.Subject != "commands.pc.PC1" || !strings.HasPrefix(m.Reply, "$JS.ACK.EXEC.agent_replay_PC1.") {
		t.Fatalf("pulled %+v: %v", m, err)
	}
	if err := m.AckSync(); err != nil {
		t.Fatalf("ack: %v", err)
	}
	exec, _ := l.bjs.Stream(ctx, wire.StreamExec)
	if c, err := exec.Consumer(ctx, "agent_replay_PC1"); err != nil || c.CachedInfo().NumAckPending != 0 || c.CachedInfo().AckFloor.Stream != 1 {
		t.Fatalf("the ack did not reach the consumer: %v %+v", err, c.CachedInfo())
	}

	// kv.watch(pc_id): an ordered push consumer, no name.
	watch, _ := pc1.SubscribeSync("_INBOX.w1")
	got := req("$JS.API.CONSUMER.CREATE.KV_agent_groups", `{"stream_name":"KV_agent_groups","config":{"deliver_subject":"_INBOX.w1",`+
		`"description":"kv watch consumer","deliver_policy":"last_per_subject","ack_policy":"none","ack_wait":79200000000000,"max_deliver":1,`+
		`"filter_subject":"$KV.agent_groups.PC1","replay_policy":"instant","flow_control":true,"idle_heartbeat":5000000000,`+
		`"inactive_threshold":30000000000,"num_replicas":1,"mem_storage":true},"action":""}`)
	if !strings.Contains(got, `"deliver_subject":"_INBOX.w1"`) {
		t.Fatalf("the answer names another deliver subject: %s", got)
	}
	if m, err := watch.NextMsg(5 * time.Second); err != nil || string(m.Data) != `{"groups":["lab"]}` {
		t.Fatalf("watch entry %+v: %v", m, err)
	}
	// keys() then watch_all() on agent_config: the whole bucket, narrowed.
	keys, _ := pc1.SubscribeSync("_INBOX.k1")
	req("$JS.API.CONSUMER.CREATE.KV_agent_config", `{"stream_name":"KV_agent_config","config":{"deliver_subject":"_INBOX.k1",`+
		`"description":"kv history consumer","deliver_policy":"last_per_subject","ack_policy":"none","ack_wait":79200000000000,"max_deliver":1,`+
		`"filter_subject":"$KV.agent_config.>","replay_policy":"instant","headers_only":true,"flow_control":true,"idle_heartbeat":5000000000,`+
		`"inactive_threshold":30000000000,"num_replicas":1,"mem_storage":true},"action":""}`)
	m, err = keys.NextMsg(5 * time.Second)
	if err != nil || m.Subject != "$KV.agent_config.global" {
		t.Fatalf("key listing %+v: %v", m, err)
	}
	if m, err := keys.NextMsg(time.Second); err == nil && m.Header.Get("Status") == "" {
		t.Fatalf("another key listed: %s", m.Subject)
	}
}
