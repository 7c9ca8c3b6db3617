package natsauth

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/wire"
)

// StreamInfoRelay is the subject prefix of the backend's stream-info relay
// for agents: an agent account imports
// StreamInfoRelay.{stream} as its $JS.API.STREAM.INFO.{stream}. The relay
// asks JetStream for the stream's info with no request body, so an agent
// cannot add a subjects_filter and list the stream's subjects (every
// pc_id in agent_groups, group names in EXEC, object keys in the output
// store).
const StreamInfoRelay = "_kanade.agents.stream_info"

// relayQueue is the relay's queue group: one node answers each request.
const relayQueue = "kanade-stream-info"

// AgentStreams are the streams agents may look up.
func AgentStreams() []string {
	out := []string{objStream, wire.StreamExec}
	for _, r := range AgentKV {
		out = append(out, "KV_"+r.Bucket)
	}
	return out
}

// Relay answers agents' stream lookups on nc, a backend-account
// connection (every node runs one). Stop it with Unsubscribe.
func Relay(nc *nats.Conn, log *slog.Logger) (*nats.Subscription, error) {
	allowed := map[string]bool{}
	for _, s := range AgentStreams() {
		allowed[s] = true
	}
	// Lookups are quick; a bounded number in flight keeps a fleet
	// reconnecting at once from queueing behind one slow answer.
	slots := make(chan struct{}, 32)
	sub, err := nc.QueueSubscribe(StreamInfoRelay+".*", relayQueue, func(m *nats.Msg) {
		name := strings.TrimPrefix(m.Subject, StreamInfoRelay+".")
		if !allowed[name] || m.Reply == "" {
			return
		}
		slots <- struct{}{}
		go func() {
			defer func() { <-slots }()
			rep, err := nc.Request("$JS.API.STREAM.INFO."+name, nil, 5*time.Second)
			if err != nil {
				log.Debug("stream info relay", "stream", name, "err", err)
				return
			}
			if err := m.RespondMsg(&nats.Msg{Data: rep.Data, Header: rep.Header}); err != nil {
				log.Debug("stream info relay: respond", "stream", name, "err", err)
			}
		}()
	})
	if err != nil {
		return nil, fmt.Errorf("stream info relay: %w", err)
	}
	return sub, nil
}
