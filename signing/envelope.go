package signing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/wire"
)

// The v2 envelope binds a Command to one PC and an expiry:
// {"kind":"kanade.command.v2","target_pc_id":"PC001","expires_at":"…","command":{…}},
// signed exactly as sent like a bare Command.
const (
	KindV2         = "kanade.command.v2"
	ProtocolLegacy = "legacy"
	// MaxEnvelopeValidity bounds expires_at - at.
	MaxEnvelopeValidity = 7 * 24 * time.Hour
	// FutureSkew is how far ahead of an agent's clock at may be.
	FutureSkew = time.Hour
)

// Envelope is the v2 envelope's body.
type Envelope struct {
	Kind       string          `json:"kind"`
	TargetPCID string          `json:"target_pc_id"`
	ExpiresAt  string          `json:"expires_at"`
	Command    json.RawMessage `json:"command"`
}

// NewEnvelope wraps the marshalled Command cmd for pcID, expiring at
// expires (RFC 3339, UTC, whole seconds).
func NewEnvelope(pcID string, expires time.Time, cmd []byte) ([]byte, error) {
	if !wire.ValidToken(pcID) {
		return nil, fmt.Errorf("envelope: pc_id %q cannot name a host", pcID)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(Envelope{Kind: KindV2, TargetPCID: pcID, ExpiresAt: expires.UTC().Format(time.RFC3339), Command: cmd})
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// IsEnvelope reports whether body is an envelope: a JSON object with a
// "kind" key, whatever its value (agents never read such a body as a bare
// Command).
func IsEnvelope(body []byte) bool {
	t := bytes.TrimLeft(body, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return false
	}
	var keys map[string]json.RawMessage
	if json.Unmarshal(body, &keys) != nil {
		return false
	}
	_, ok := keys["kind"]
	return ok
}

// CheckEnvelope applies an agent's envelope rules, in upstream's order, to
// a body whose signature v already verified (v.Outcome OK): the kind, the
// target (byte-equal to pcID), expires_at, then the clocks (at at most
// FutureSkew ahead of now, expires_at not before at nor more than
// MaxEnvelopeValidity after it, now not past the earlier of expires_at and
// the Command's deadline_at). It returns the Command's bytes when all hold.
func CheckEnvelope(v Verdict, body []byte, pcID string, now time.Time) ([]byte, Verdict) {
	if v.Outcome != OK {
		return nil, v
	}
	reject := func(o Outcome, format string, args ...any) ([]byte, Verdict) {
		v.Outcome, v.Detail = o, fmt.Sprintf(format, args...)
		return nil, v
	}
	if err := envelopeKeys(body); err != nil {
		return reject(EnvelopeRejected, "not a v2 envelope: %v", err)
	}
	var raw struct {
		Kind       *json.RawMessage `json:"kind"`
		TargetPCID *string          `json:"target_pc_id"`
		ExpiresAt  *string          `json:"expires_at"`
		Command    json.RawMessage  `json:"command"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return reject(EnvelopeRejected, "not a v2 envelope: %v", err)
	}
	var kind string
	if raw.Kind == nil || json.Unmarshal(*raw.Kind, &kind) != nil || kind != KindV2 {
		return reject(EnvelopeRejected, "kind must be %q", KindV2)
	}
	if raw.TargetPCID == nil || *raw.TargetPCID == "" {
		return reject(EnvelopeRejected, "target_pc_id is missing")
	}
	if *raw.TargetPCID != pcID {
		return reject(Misaddressed, "It names %q; this host is %q.", *raw.TargetPCID, pcID)
	}
	if raw.ExpiresAt == nil {
		return reject(EnvelopeRejected, "expires_at is missing")
	}
	expires, err := time.Parse(time.RFC3339Nano, *raw.ExpiresAt)
	if err != nil {
		return reject(EnvelopeRejected, "expires_at %q is not RFC 3339", *raw.ExpiresAt)
	}
	var cmd wire.Command
	if len(raw.Command) == 0 || json.Unmarshal(raw.Command, &cmd) != nil || cmd.RequestID == "" {
		return reject(EnvelopeRejected, "command is not a Command")
	}
	if ahead := v.At.Sub(now); ahead > FutureSkew {
		return reject(ClockAhead, "Signed at %s, %s ahead of this host's clock (at most %s allowed).",
			v.At.Format(time.RFC3339Nano), ahead.Round(time.Second), FutureSkew)
	}
	if expires.Before(v.At) {
		return reject(EnvelopeRejected, "expires_at %s is before it was signed (%s)", *raw.ExpiresAt, v.At.Format(time.RFC3339Nano))
	}
	if expires.Sub(v.At) > MaxEnvelopeValidity {
		return reject(EnvelopeRejected, "expires_at %s is more than %s after it was signed (%s)", *raw.ExpiresAt, MaxEnvelopeValidity, v.At.Format(time.RFC3339Nano))
	}
	deadline := expires
	if cmd.DeadlineAt != nil && cmd.DeadlineAt.Before(deadline) {
		deadline = *cmd.DeadlineAt
	}
	if now.After(deadline) {
		return reject(Expired, "Its start deadline %s has passed (now %s).", deadline.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return raw.Command, v
}

// envelopeKeys checks that body is one JSON object whose keys are the
// envelope's, each once, spelled exactly: encoding/json alone would match
// "KIND" to kind and take the last of two "kind"s, where upstream's
// agents refuse both.
func envelopeKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := t.(string)
		switch key {
		case "kind", "target_pc_id", "expires_at", "command":
		default:
			return fmt.Errorf("unknown key %q", key)
		}
		if seen[key] {
			return fmt.Errorf("key %q twice", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the object")
	}
	return nil
}

// Envelopes turns a publish on commands.pc.{pc} into a v2 envelope for
// that PC when its agent reports kanade.command.v2 in command_protocols,
// learnt from the heartbeats (Watch). Broadcasts (commands.all,
// commands.group.*) stay bare Commands: an envelope names one host. A nil
// *Envelopes leaves every body as it is, as upstream's backend does.
type Envelopes struct {
	// TTL is how long an envelope stays good after it is published
	// (expires_at = publish time + TTL), at most MaxEnvelopeValidity.
	TTL time.Duration

	mu sync.Mutex
	v2 map[string]bool
}

// DefaultEnvelopeTTL bounds a replay: an agent back after a day offline
// still runs the envelope EXEC kept for it; after longer it refuses it
// (a bare Command has no such bound and the stream keeps it 7 days).
const DefaultEnvelopeTTL = 24 * time.Hour

// NewEnvelopes checks the TTL (0 = DefaultEnvelopeTTL).
func NewEnvelopes(ttl time.Duration) (*Envelopes, error) {
	if ttl == 0 {
		ttl = DefaultEnvelopeTTL
	}
	if ttl < time.Minute || ttl > MaxEnvelopeValidity-time.Minute {
		return nil, fmt.Errorf("envelope ttl %s: want 1m to %s", ttl, MaxEnvelopeValidity-time.Minute)
	}
	return &Envelopes{TTL: ttl, v2: map[string]bool{}}, nil
}

// Observe records what a heartbeat reports: a PC is sent envelopes while
// its latest heartbeat lists kanade.command.v2.
func (e *Envelopes) Observe(h wire.Heartbeat) {
	if e == nil || h.PCID == "" {
		return
	}
	ok := slices.Contains(h.CommandProtocols, KindV2)
	e.mu.Lock()
	defer e.mu.Unlock()
	if ok {
		e.v2[h.PCID] = true
	} else {
		delete(e.v2, h.PCID)
	}
}

// Supports reports whether pcID's last heartbeat reported v2.
func (e *Envelopes) Supports(pcID string) bool {
	if e == nil {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.v2[pcID]
}

// Watch subscribes to the agents' heartbeats on nc until stop is called.
func (e *Envelopes) Watch(nc *nats.Conn, log *slog.Logger) (stop func(), err error) {
	sub, err := nc.Subscribe(wire.SubjectHeartbeatsAll, func(m *nats.Msg) {
		h, err := wire.DecodeHeartbeat(m.Data)
		// A heartbeat speaks for its subject's PC only: another agent's
		// must not switch this PC's Commands to or from envelopes.
		if err != nil || m.Subject != wire.HeartbeatSubject(h.PCID) {
			return
		}
		e.Observe(h)
	})
	if err != nil {
		return nil, fmt.Errorf("envelopes: subscribe heartbeats: %w", err)
	}
	sub.SetPendingLimits(-1, 64<<20)
	if err := nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("envelopes: %w", err)
	}
	log.Info("command envelopes: v2 to agents that report it on commands.pc.*", "ttl", e.TTL)
	return func() { sub.Unsubscribe() }, nil
}

// Body is what to publish on subject for the marshalled Command cmd at
// now: an envelope for a PC that reports v2, else cmd itself.
func (e *Envelopes) Body(subject string, cmd []byte, now time.Time) ([]byte, error) {
	pc, ok := strings.CutPrefix(subject, wire.CommandsPC(""))
	if e == nil || !ok || !e.Supports(pc) {
		return cmd, nil
	}
	if e.TTL <= 0 {
		return nil, errors.New("envelopes: no TTL (use NewEnvelopes)")
	}
	return NewEnvelope(pc, now.Add(e.TTL), cmd)
}
