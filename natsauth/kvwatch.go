package natsauth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/wire"
)

// KVWatchRelay is the subject prefix of the backend's relay for agents'
// KV watches: an agent account imports KVWatchRelay.{pc}.KV_{bucket} (and
// .> after it, the form with a consumer name) as its
// $JS.API.CONSUMER.CREATE.KV_{bucket}. A watch is an ordered push
// consumer delivering to the client's inbox; the relay creates it only on
// keys the agent may read, with its deliver subject _INBOX.x rewritten to
// KVDeliverPrefix.{pc}.x, which that agent's account imports as _INBOX.x
// (and nobody else's), and answers with the agent's own deliver subject.
const KVWatchRelay = "_kanade.agents.kv_watch"

// KVDeliverPrefix is where the backend's watch consumers deliver: the
// agent on pc hears KVDeliverPrefix.{pc}.> as its _INBOX.>.
const KVDeliverPrefix = "_kanade.agents.kv_deliver"

// agentInbox is the inbox prefix agents use (the clients' default): the
// only place an agent may subscribe for replies and watch deliveries.
const agentInbox = "_INBOX."

// kvWatchKeys are the consumer settings a watch may carry: those of a push
// consumer that delivers to its one deliver subject. durable_name,
// deliver_group and every pull or sampling setting must be absent or zero.
var kvWatchKeys = map[string]bool{
	"name": true, "description": true, "deliver_subject": true,
	"deliver_policy": true, "opt_start_seq": true, "opt_start_time": true,
	"ack_policy": true, "ack_wait": true, "max_deliver": true, "backoff": true,
	"filter_subject": true, "filter_subjects": true, "replay_policy": true,
	"rate_limit_bps": true, "max_ack_pending": true, "headers_only": true,
	"flow_control": true, "idle_heartbeat": true, "inactive_threshold": true,
	"num_replicas": true, "mem_storage": true, "metadata": true,
}

// kvWatchMaxInactive bounds how long a watch consumer outlives its
// subscriber.
const kvWatchMaxInactive = 5 * time.Minute

// kvWatchPerMinute bounds the watches one node creates for one agent in a
// minute (an ordered consumer is recreated on every gap or reconnect; a
// loop of creates is refused, not served).
const kvWatchPerMinute = 20

// covers tells whether every subject matching p also matches f.
func covers(f, p string) bool {
	ft, pt := strings.Split(f, "."), strings.Split(p, ".")
	for i, t := range ft {
		if t == ">" {
			return len(pt) > i
		}
		if i >= len(pt) || pt[i] == ">" || t != "*" && t != pt[i] {
			return false
		}
	}
	return len(ft) == len(pt)
}

// narrowKVFilters maps the keys a watch asks for onto those of r pc may
// read: a filter covering allowed keys (">", "*", the whole bucket) is
// narrowed to them, one within an allowed pattern is kept. A filter that
// names none of them is refused; so a watch of the whole agent_config
// bucket (upstream's watch_all and keys()) becomes a watch of global,
// groups.*, pcs.{pc} and target_version, and never shows another PC's key.
func narrowKVFilters(r KVRead, pc string, filters []string) ([]string, error) {
	prefix := "$KV." + r.Bucket + "."
	var out []string
	for _, f := range filters {
		key, ok := strings.CutPrefix(f, prefix)
		if !ok || key == "" {
			return nil, fmt.Errorf("%q is not a key of %s", f, r.Bucket)
		}
		n := len(out)
		for _, k := range kvKeys(r, pc) {
			switch {
			case covers(key, k):
				out = append(out, prefix+k)
			case covers(k, key):
				out = append(out, prefix+key)
			}
		}
		if len(out) == n {
			return nil, fmt.Errorf("key %q is not one this agent reads", key)
		}
	}
	// No two may overlap (JetStream refuses it): keep the widest.
	var keep []string
	for i, a := range out {
		dup := false
		for j, b := range out {
			if i != j && covers(b, a) && (a != b || j < i) {
				dup = true
				break
			}
		}
		if !dup {
			keep = append(keep, a)
		}
	}
	return keep, nil
}

// marshal encodes without HTML escaping (relayed JSON stays byte-faithful
// for `<`, `>` and `&`).
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// checkKVWatch checks an agent's watch consumer request on stream (a
// KV_{bucket}) and returns the API subject and request to forward, and the
// agent's own deliver subject.
func checkKVWatch(pc, stream, rest string, body []byte) (subject string, fwd []byte, deliver string, err error) {
	var r KVRead
	found := false
	for _, kv := range AgentKV {
		if "KV_"+kv.Bucket == stream && kv.Watch {
			r, found = kv, true
		}
	}
	if !found {
		return "", nil, "", fmt.Errorf("stream %q is not a KV bucket agents read", stream)
	}
	var req struct {
		Stream   string                     `json:"stream_name"`
		Config   map[string]json.RawMessage `json:"config"`
		Action   string                     `json:"action"`
		Pedantic bool                       `json:"pedantic"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return "", nil, "", fmt.Errorf("not a consumer create request: %v", err)
	}
	if req.Stream != "" && req.Stream != stream {
		return "", nil, "", fmt.Errorf("stream %q is not %s", req.Stream, stream)
	}
	if req.Action != "" && req.Action != "create" {
		return "", nil, "", fmt.Errorf("action %q: a watch is created, not updated", req.Action)
	}
	cfg := map[string]json.RawMessage{}
	for k, v := range req.Config {
		if !kvWatchKeys[k] {
			if !isZero(v) {
				return "", nil, "", fmt.Errorf("%s may not be set on a watch", k)
			}
			continue
		}
		cfg[k] = v
	}
	str := func(k string) (string, error) {
		var s string
		if v, ok := cfg[k]; ok && !isZero(v) {
			if err := json.Unmarshal(v, &s); err != nil {
				return "", fmt.Errorf("%s is not a string", k)
			}
		}
		return s, nil
	}
	if deliver, err = str("deliver_subject"); err != nil {
		return "", nil, "", err
	}
	inbox, ok := strings.CutPrefix(deliver, agentInbox)
	if !ok || inbox == "" || !validLiteral(inbox) {
		return "", nil, "", fmt.Errorf("deliver_subject must be in the agent's %s>", agentInbox)
	}
	cfg["deliver_subject"], _ = marshal(KVDeliverPrefix + "." + pc + "." + inbox)
	name, err := str("name")
	if err != nil {
		return "", nil, "", err
	}
	if name != "" && !wire.ValidToken(name) {
		return "", nil, "", fmt.Errorf("name %q", name)
	}
	one, err := str("filter_subject")
	if err != nil {
		return "", nil, "", err
	}
	var many []string
	if v, ok := cfg["filter_subjects"]; ok && json.Unmarshal(v, &many) != nil {
		return "", nil, "", fmt.Errorf("filter_subjects is not a list of strings")
	}
	if one != "" {
		many = append(many, one)
	}
	if len(many) == 0 {
		return "", nil, "", fmt.Errorf("a watch names its keys")
	}
	narrowed, err := narrowKVFilters(r, pc, many)
	if err != nil {
		return "", nil, "", err
	}
	// The API subject's extra tokens (name, then filter) must be the
	// config's.
	if rest != "" {
		n, f, _ := strings.Cut(rest, ".")
		if name == "" {
			name = n // clients may name the consumer in the subject only
		}
		if n != name || !wire.ValidToken(n) || f != "" && (f != one || len(many) != 1) {
			return "", nil, "", fmt.Errorf("the subject's name or filter is not the config's")
		}
	}
	delete(cfg, "filter_subject")
	delete(cfg, "filter_subjects")
	if len(narrowed) == 1 {
		cfg["filter_subject"], _ = marshal(narrowed[0])
	} else {
		cfg["filter_subjects"], _ = marshal(narrowed)
	}
	var inactive int64
	if v, ok := cfg["inactive_threshold"]; ok && json.Unmarshal(v, &inactive) != nil {
		return "", nil, "", fmt.Errorf("inactive_threshold is not a number")
	}
	if inactive <= 0 || inactive > int64(kvWatchMaxInactive) {
		cfg["inactive_threshold"], _ = marshal(int64(kvWatchMaxInactive))
	}
	subject = "$JS.API.CONSUMER.CREATE." + stream
	if name != "" {
		subject += "." + name
	}
	// Always a create, never an update: a watch must not take over a
	// consumer someone else made under the same name.
	fwd, err = marshal(map[string]any{"stream_name": stream, "config": cfg, "action": "create", "pedantic": req.Pedantic})
	return subject, fwd, deliver, err
}

// validLiteral tells whether s is a subject of literal tokens.
func validLiteral(s string) bool {
	for _, t := range strings.Split(s, ".") {
		if !wire.ValidToken(t) {
			return false
		}
	}
	return true
}

// restoreDeliver puts the agent's own deliver subject back into a consumer
// create answer (clients subscribe to the deliver subject they are told).
func restoreDeliver(answer []byte, deliver string) []byte {
	var top map[string]json.RawMessage
	if json.Unmarshal(answer, &top) != nil || top["config"] == nil {
		return answer
	}
	var cfg map[string]json.RawMessage
	if json.Unmarshal(top["config"], &cfg) != nil {
		return answer
	}
	cfg["deliver_subject"], _ = marshal(deliver)
	var err error
	if top["config"], err = marshal(cfg); err != nil {
		return answer
	}
	out, err := marshal(top)
	if err != nil {
		return answer
	}
	return out
}

// watchLimiter counts the consumers created (or updated) per agent in the
// current minute: kvWatchPerMinute at most.
type watchLimiter struct {
	mu     sync.Mutex
	minute int64
	n      map[string]int
}

func (w *watchLimiter) allow(pc string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m := now.Unix() / 60; m != w.minute || w.n == nil {
		w.minute, w.n = m, map[string]int{}
	}
	w.n[pc]++
	return w.n[pc] <= kvWatchPerMinute
}

// relayKVWatch answers one agent's watch consumer create.
func relayKVWatch(nc *nats.Conn, lim *watchLimiter, m *nats.Msg, log *slog.Logger) {
	pc, tail, _ := strings.Cut(strings.TrimPrefix(m.Subject, KVWatchRelay+"."), ".")
	stream, rest, _ := strings.Cut(tail, ".")
	if m.Reply == "" || jsAckReply(m.Reply) {
		return
	}
	const typ = "io.nats.jetstream.api.v1.consumer_create_response"
	subject, fwd, deliver, err := checkKVWatch(pc, stream, rest, m.Data)
	if err == nil && !lim.allow(pc, time.Now()) {
		err = fmt.Errorf("more than %d watches in a minute", kvWatchPerMinute)
	}
	if err != nil {
		log.Debug("kv watch relay: refused", "pc_id", pc, "stream", stream, "err", err)
		m.Respond(apiError(typ, 403, "kanade: watch of "+pc+": "+err.Error()))
		return
	}
	rep, err := nc.Request(subject, fwd, relayTimeout)
	if err != nil {
		log.Debug("kv watch relay: no answer", "pc_id", pc, "err", err)
		return
	}
	if err := m.RespondMsg(&nats.Msg{Data: restoreDeliver(rep.Data, deliver), Header: rep.Header}); err != nil {
		log.Debug("kv watch relay: respond", "pc_id", pc, "err", err)
	}
}

// KVUnwatchRelay is the subject prefix of the backend's relay for the end
// of a watch: an agent account imports KVUnwatchRelay.{pc}.KV_{bucket}.*
// as its $JS.API.CONSUMER.DELETE.KV_{bucket}.*. The relay deletes the
// consumer only if it delivers to that agent's own prefix (one of its
// watches); nats.go deletes a watch's consumer when it stops.
const KVUnwatchRelay = "_kanade.agents.kv_unwatch"

// relayKVUnwatch answers one agent's consumer delete.
func relayKVUnwatch(nc *nats.Conn, m *nats.Msg, log *slog.Logger) {
	pc, tail, _ := strings.Cut(strings.TrimPrefix(m.Subject, KVUnwatchRelay+"."), ".")
	stream, name, _ := strings.Cut(tail, ".")
	if m.Reply == "" || jsAckReply(m.Reply) {
		return
	}
	const typ = "io.nats.jetstream.api.v1.consumer_delete_response"
	if !wire.ValidToken(name) || !strings.HasPrefix(stream, "KV_") {
		m.Respond(apiError(typ, 400, "kanade: no such watch"))
		return
	}
	rep, err := nc.Request("$JS.API.CONSUMER.INFO."+stream+"."+name, nil, relayTimeout)
	if err != nil {
		log.Debug("kv unwatch relay: no answer", "pc_id", pc, "err", err)
		return
	}
	var info struct {
		Config struct {
			DeliverSubject string `json:"deliver_subject"`
		} `json:"config"`
	}
	if json.Unmarshal(rep.Data, &info) != nil || !strings.HasPrefix(info.Config.DeliverSubject, KVDeliverPrefix+"."+pc+".") {
		// Not one of its watches (or none at all): the same answer.
		m.Respond(apiError(typ, 404, "kanade: "+pc+" has no watch "+name))
		return
	}
	rep, err = nc.Request("$JS.API.CONSUMER.DELETE."+stream+"."+name, nil, relayTimeout)
	if err != nil {
		log.Debug("kv unwatch relay: no answer", "pc_id", pc, "err", err)
		return
	}
	if err := m.RespondMsg(&nats.Msg{Data: rep.Data, Header: rep.Header}); err != nil {
		log.Debug("kv unwatch relay: respond", "pc_id", pc, "err", err)
	}
}
