package natsauth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/wire"
)

// ReplayConsumerRelay is the subject prefix of the backend's relay for
// agents' command-replay consumers: an agent account imports
// ReplayConsumerRelay.{pc} (and .{pc}.>, the form with the filter in the
// subject) as its $JS.API.CONSUMER.CREATE.EXEC.{ReplayConsumer(pc)}. The
// relay creates or updates that one durable pull consumer on EXEC, filtered
// within the agent's lane, and refuses anything else (another name, a push
// consumer, a filter outside the lane).
const ReplayConsumerRelay = "_kanade.agents.replay_consumer"

// ReplayConsumer is the name upstream agents give their command-replay
// consumer on EXEC: agent_replay_ and the pc_id with every character
// outside [A-Za-z0-9_-] replaced by '_'.
func ReplayConsumer(pc string) string {
	var b strings.Builder
	b.WriteString("agent_replay_")
	for _, c := range pc {
		if c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// replayConsumerKeys are the consumer settings an agent may choose for its
// replay consumer: none delivers anywhere or publishes anything. Any other
// key must be absent or zero (deliver_subject, deliver_group,
// flow_control, idle_heartbeat: push consumers; sample_freq: advisories;
// rate_limit_bps; and whatever a later server adds).
var replayConsumerKeys = map[string]bool{
	"durable_name": true, "name": true, "description": true,
	"deliver_policy": true, "opt_start_seq": true, "opt_start_time": true,
	"ack_policy": true, "ack_wait": true, "max_deliver": true, "backoff": true,
	"filter_subject": true, "filter_subjects": true, "replay_policy": true,
	"max_waiting": true, "max_ack_pending": true, "headers_only": true,
	"max_batch": true, "max_expires": true, "max_bytes": true,
	"inactive_threshold": true, "num_replicas": true, "mem_storage": true,
	"metadata": true, "pause_until": true,
	"priority_groups": true, "priority_policy": true, "priority_timeout": true,
}

// replayFilterOK tells whether subject is within pc's lane on EXEC.
func replayFilterOK(pc, subject string) bool {
	switch {
	case subject == wire.SubjectCommandsAll, subject == wire.CommandsPC(pc):
		return true
	case strings.HasPrefix(subject, wire.CommandsGroup("")):
		g := strings.TrimPrefix(subject, wire.CommandsGroup(""))
		return g == "*" || wire.ValidToken(g)
	}
	return false
}

// isZero tells whether a JSON value is absent-equivalent.
func isZero(v json.RawMessage) bool {
	switch string(bytes.TrimSpace(v)) {
	case "", "null", "0", "false", `""`, "[]", "{}":
		return true
	}
	return false
}

// checkReplayCreate checks an agent's consumer create request and returns
// the request to forward to JetStream.
func checkReplayCreate(pc, subjectFilter string, body []byte) ([]byte, error) {
	var req struct {
		Stream   string                     `json:"stream_name"`
		Config   map[string]json.RawMessage `json:"config"`
		Action   string                     `json:"action"`
		Pedantic bool                       `json:"pedantic"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("not a consumer create request: %v", err)
	}
	if req.Stream != "" && req.Stream != wire.StreamExec {
		return nil, fmt.Errorf("stream %q is not %s", req.Stream, wire.StreamExec)
	}
	if req.Action != "" && req.Action != "create" && req.Action != "update" {
		return nil, fmt.Errorf("action %q", req.Action)
	}
	name := ReplayConsumer(pc)
	cfg := map[string]json.RawMessage{}
	for k, v := range req.Config {
		if !replayConsumerKeys[k] {
			if !isZero(v) {
				return nil, fmt.Errorf("%s may not be set (a pull consumer delivers to no subject)", k)
			}
			continue
		}
		cfg[k] = v
	}
	for _, k := range []string{"durable_name", "name"} {
		var s string
		if v, ok := cfg[k]; ok && !isZero(v) {
			if err := json.Unmarshal(v, &s); err != nil || s != name {
				return nil, fmt.Errorf("%s must be %q", k, name)
			}
		}
	}
	if _, ok := cfg["durable_name"]; !ok {
		cfg["durable_name"], _ = marshal(name)
	}
	var one string
	var many []string
	if v, ok := cfg["filter_subject"]; ok && json.Unmarshal(v, &one) != nil {
		return nil, fmt.Errorf("filter_subject is not a string")
	}
	if v, ok := cfg["filter_subjects"]; ok && json.Unmarshal(v, &many) != nil {
		return nil, fmt.Errorf("filter_subjects is not a list of strings")
	}
	if one != "" {
		many = append(many, one)
	}
	if subjectFilter != "" && (one != subjectFilter || len(many) != 1) {
		return nil, fmt.Errorf("the subject's filter %q is not the config's", subjectFilter)
	}
	if len(many) == 0 {
		return nil, fmt.Errorf("a filter is required: %s, %s, %s", wire.SubjectCommandsAll,
			wire.CommandsPC(pc), wire.CommandsGroup("{group}"))
	}
	for _, s := range many {
		if !replayFilterOK(pc, s) {
			return nil, fmt.Errorf("filter %q is outside this agent's Commands (%s, %s, %s)", s,
				wire.SubjectCommandsAll, wire.CommandsPC(pc), wire.CommandsGroup("{group}"))
		}
	}
	return marshal(map[string]any{"stream_name": wire.StreamExec, "config": cfg,
		"action": req.Action, "pedantic": req.Pedantic})
}

// apiError is a JetStream API error answer, as clients decode them.
func apiError(typ string, code int, why string) []byte {
	b, _ := marshal(map[string]any{"type": typ,
		"error": map[string]any{"code": code, "err_code": 10400 + code%100, "description": why}})
	return b
}

// relayReplayConsumer answers one agent's replay consumer create.
func relayReplayConsumer(nc *nats.Conn, lim *watchLimiter, m *nats.Msg, log *slog.Logger) {
	rest := strings.TrimPrefix(m.Subject, ReplayConsumerRelay+".")
	pc, filter, _ := strings.Cut(rest, ".")
	if m.Reply == "" || jsAckReply(m.Reply) {
		// A reply in $JS.ACK. crosses the account boundary unchanged
		// (nats-server keeps it for pull consumers): never answer there.
		log.Debug("replay consumer relay: no reply, or a $JS.ACK reply", "pc_id", pc, "reply", m.Reply)
		return
	}
	fwd, err := checkReplayCreate(pc, filter, m.Data)
	if err == nil && !lim.allow(pc, time.Now()) {
		// Upstream agents create it on (re)connect and on a change of
		// groups; a loop of updates (each a write in the cluster) is not
		// served.
		err = fmt.Errorf("more than %d creates or updates in a minute", kvWatchPerMinute)
	}
	if err != nil {
		log.Debug("replay consumer relay: refused", "pc_id", pc, "err", err)
		m.Respond(apiError("io.nats.jetstream.api.v1.consumer_create_response", 403,
			"kanade: replay consumer of "+pc+": "+err.Error()))
		return
	}
	rep, err := nc.Request("$JS.API.CONSUMER.CREATE."+wire.StreamExec+"."+ReplayConsumer(pc), fwd, relayTimeout)
	if err != nil {
		log.Debug("replay consumer relay: no answer", "pc_id", pc, "err", err)
		return
	}
	if err := m.RespondMsg(&nats.Msg{Data: rep.Data, Header: rep.Header}); err != nil {
		log.Debug("replay consumer relay: respond", "pc_id", pc, "err", err)
	}
}
