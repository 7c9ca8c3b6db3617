package natsauth

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/wire"
)

// StreamInfoRelay is the subject prefix of the backend's stream-info relay
// for agents: an agent account imports StreamInfoRelay.{stream} as its
// $JS.API.STREAM.INFO.{stream}. The relay asks JetStream for the stream's
// info with no request body, so an agent cannot add a subjects_filter and
// list the stream's subjects (every pc_id in agent_groups, group names in
// EXEC, object keys in the output store).
const StreamInfoRelay = "_kanade.agents.stream_info"

// ResultsRelay is the subject prefix of the backend's results relay: an
// agent account imports ResultsRelay.{pc}.> as its results.>, so the relay
// learns which agent sent a result from the subject the server mapped,
// refuses one whose pc_id is another's, and publishes the rest on
// results.{request_id} unchanged (headers included), answering with
// JetStream's own ack. This is the check results.{request_id} cannot make.
const ResultsRelay = "_kanade.agents.results"

// relayQueue is the relays' queue group: one node answers each request.
const relayQueue = "kanade-agent-relay"

// relayTimeout bounds one forwarded request (an agent waits longer).
const relayTimeout = 10 * time.Second

// AgentStreams are the streams agents may look up.
func AgentStreams() []string {
	out := []string{objStream, wire.StreamExec}
	for _, r := range AgentKV {
		out = append(out, "KV_"+r.Bucket)
	}
	return out
}

// Relay answers agents' stream lookups and relays their results, on nc, a
// backend-account connection (every node runs one; they share the work).
// The returned func unsubscribes.
func Relay(nc *nats.Conn, log *slog.Logger) (func(), error) {
	allowed := map[string]bool{}
	for _, s := range AgentStreams() {
		allowed[s] = true
	}
	// A bounded number in flight: a fleet reconnecting, or a broadcast's
	// results, must not make one goroutine per message.
	slots := make(chan struct{}, 64)
	var inflight sync.WaitGroup // the returned stop waits for them
	async := func(f func()) {
		slots <- struct{}{}
		inflight.Add(1)
		go func() {
			defer func() { <-slots; inflight.Done() }()
			f()
		}()
	}
	info, err := nc.QueueSubscribe(StreamInfoRelay+".*", relayQueue, func(m *nats.Msg) {
		name := strings.TrimPrefix(m.Subject, StreamInfoRelay+".")
		if !allowed[name] || m.Reply == "" || jsAckReply(m.Reply) {
			return
		}
		async(func() {
			rep, err := nc.Request("$JS.API.STREAM.INFO."+name, nil, relayTimeout)
			if err != nil {
				log.Debug("stream info relay", "stream", name, "err", err)
				return
			}
			if err := m.RespondMsg(&nats.Msg{Data: rep.Data, Header: rep.Header}); err != nil {
				log.Debug("stream info relay: respond", "stream", name, "err", err)
			}
		})
	})
	if err != nil {
		return nil, fmt.Errorf("stream info relay: %w", err)
	}
	res, err := nc.QueueSubscribe(ResultsRelay+".*.>", relayQueue, func(m *nats.Msg) {
		async(func() { relayResult(nc, m, log) })
	})
	if err != nil {
		info.Unsubscribe()
		return nil, fmt.Errorf("results relay: %w", err)
	}
	// A broadcast's results arrive at once, so the queue is deep; but not
	// unbounded: one agent flooding results must not exhaust the node. A
	// result dropped past the limit gets no ack, and its agent sends it
	// again from its outbox.
	res.SetPendingLimits(1<<20, 256<<20)
	var replayLim watchLimiter
	replay, err := nc.QueueSubscribe(ReplayConsumerRelay+".>", relayQueue, func(m *nats.Msg) {
		async(func() { relayReplayConsumer(nc, &replayLim, m, log) })
	})
	if err != nil {
		info.Unsubscribe()
		res.Unsubscribe()
		return nil, fmt.Errorf("replay consumer relay: %w", err)
	}
	var lim watchLimiter
	watch, err := nc.QueueSubscribe(KVWatchRelay+".>", relayQueue, func(m *nats.Msg) {
		async(func() { relayKVWatch(nc, &lim, m, log) })
	})
	if err != nil {
		info.Unsubscribe()
		res.Unsubscribe()
		replay.Unsubscribe()
		return nil, fmt.Errorf("kv watch relay: %w", err)
	}
	unwatch, err := nc.QueueSubscribe(KVUnwatchRelay+".>", relayQueue, func(m *nats.Msg) {
		async(func() { relayKVUnwatch(nc, m, log) })
	})
	if err != nil {
		info.Unsubscribe()
		res.Unsubscribe()
		replay.Unsubscribe()
		watch.Unsubscribe()
		return nil, fmt.Errorf("kv unwatch relay: %w", err)
	}
	return func() {
		info.Unsubscribe()
		res.Unsubscribe()
		replay.Unsubscribe()
		watch.Unsubscribe()
		unwatch.Unsubscribe()
		inflight.Wait()
	}, nil
}

// jsAckReply tells whether a reply is in $JS.ACK.: nats-server passes such
// a reply across a service import unchanged (pull consumers in another
// account need it), so an answer there would land in the backend account,
// as an ack of some consumer's message. The relays never answer there.
func jsAckReply(reply string) bool { return strings.HasPrefix(reply, "$JS.ACK.") }

// relayResult checks one result's pc_id against its sender and publishes
// it to RESULTS.
func relayResult(nc *nats.Conn, m *nats.Msg, log *slog.Logger) {
	pc, reqID, _ := strings.Cut(strings.TrimPrefix(m.Subject, ResultsRelay+"."), ".")
	var v struct {
		PCID string `json:"pc_id"`
	}
	if err := json.Unmarshal(m.Data, &v); err != nil || v.PCID != pc {
		why := fmt.Sprintf("kanade: a result from %s must carry pc_id %q", pc, pc)
		if err != nil {
			why = "kanade: a result must be a JSON ExecResult: " + err.Error()
		}
		log.Debug("results relay: refused", "pc_id", pc, "claims", v.PCID, "err", err)
		if m.Reply != "" && !jsAckReply(m.Reply) {
			b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": 400, "err_code": 10400, "description": why}})
			m.Respond(b)
		}
		return
	}
	out := &nats.Msg{Subject: wire.Results(reqID), Data: m.Data, Header: nats.Header{}}
	for k, vs := range m.Header {
		if k != "Nats-Request-Info" {
			out.Header[k] = vs
		}
	}
	if m.Reply == "" || jsAckReply(m.Reply) {
		if err := nc.PublishMsg(out); err != nil {
			log.Debug("results relay: publish", "err", err)
		}
		return
	}
	rep, err := nc.RequestMsg(out, relayTimeout)
	if err != nil {
		// No answer: the agent times out and publishes again, as after
		// any lost ack.
		log.Debug("results relay: no ack", "subject", out.Subject, "err", err)
		return
	}
	if err := m.RespondMsg(&nats.Msg{Data: rep.Data, Header: rep.Header}); err != nil {
		log.Debug("results relay: respond", "err", err)
	}
}
