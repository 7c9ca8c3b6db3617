// Package audit is kanade's audit trail: who changed what, from where.
//
// Every mutating call is recorded on stream AUDIT, subject
// audit.{actor}.{action}[.{target}], and the record is acknowledged before
// the change is made (services/api calls Recorder.Record first). Each
// record carries the SHA-256 of the record before it, so a record removed
// or altered in the stream breaks the chain (Verify). A consumer on every
// node with a store projects the stream into SQLite audit_log, which
// GET /api/audit pages through.
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
)

// Stream and subjects of the trail, as upstream's.
const (
	Stream   = "AUDIT"
	Subjects = "audit.>"
)

// StreamConfig is upstream's AUDIT: 90 days, 512 MiB, oldest dropped first.
func StreamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: Stream, Subjects: []string{Subjects},
		MaxAge: 90 * 24 * time.Hour, MaxBytes: 512 << 20, Discard: jetstream.DiscardOld,
		Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
	}
}

// Record is one audit record, the message body: upstream's fields (actor,
// action, target, payload, occurred_at) plus the caller's address, the
// error of a call that failed after its record, and the chain link.
type Record struct {
	Actor      string          `json:"actor"`
	Action     string          `json:"action"`
	Target     *string         `json:"target"`
	Payload    json.RawMessage `json:"payload"`
	OccurredAt time.Time       `json:"occurred_at"`
	Addr       string          `json:"addr,omitempty"`
	Error      string          `json:"error,omitempty"`
	// Prev is the hex SHA-256 of the previous record's bytes in the
	// stream; "" for the first record ever.
	Prev string `json:"prev"`
}

// Hash is the chain hash of a record's bytes.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Subject is audit.{actor}.{action}[.{target}]. Upstream puts the parts in
// unescaped and loses records whose target is not a subject token; here
// each part is cleaned to one (dots of an action stay, as upstream's
// "account.create"). Consumers read the body, not the subject.
func Subject(actor, action, target string) string {
	var parts []string
	parts = append(parts, "audit", token(actor))
	for _, a := range strings.Split(action, ".") {
		parts = append(parts, token(a))
	}
	if target != "" {
		parts = append(parts, token(target))
	}
	return strings.Join(parts, ".")
}

// token makes s one subject token: printable, no dots, spaces or wildcards,
// at most 64 bytes.
func token(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 64 {
			break
		}
		switch {
		case r <= ' ' || r == '.' || r == '*' || r == '>' || r == 0x7f || r > 0x7e:
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// Recorder writes records on AUDIT, each chained to the one before: a
// publish names the stream's last sequence it expects, so two writers (two
// nodes) cannot both link to the same record; the loser reads the new tail
// and links again.
type Recorder struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	now    func() time.Time

	mu       sync.Mutex
	known    bool
	lastSeq  uint64
	lastHash string
}

// Ensure creates AUDIT if it is missing (an existing one is kept as it is).
func Ensure(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, StreamConfig(replicas))
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, Stream)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("audit stream: %w", err)
	}
	return s, nil
}

// NewRecorder makes sure AUDIT exists and returns a recorder on nc.
func NewRecorder(ctx context.Context, nc *nats.Conn, replicas int) (*Recorder, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	s, err := Ensure(ctx, js, replicas)
	if err != nil {
		return nil, err
	}
	return &Recorder{js: js, stream: s, now: time.Now}, nil
}

// Record writes one record and returns once the stream acknowledged it.
func (r *Recorder) Record(ctx context.Context, e api.Entry) error {
	rec := Record{Actor: e.Actor, Action: e.Action, Payload: e.Payload, Addr: e.Addr, Error: e.Error}
	if rec.Actor == "" {
		rec.Actor = "unknown"
	}
	if e.Target != "" {
		t := e.Target
		rec.Target = &t
	}
	if len(rec.Payload) == 0 || !json.Valid(rec.Payload) {
		rec.Payload = json.RawMessage("{}")
	}
	subj := Subject(rec.Actor, rec.Action, e.Target)
	r.mu.Lock()
	defer r.mu.Unlock()
	for attempt := 0; attempt < 50; attempt++ {
		if !r.known {
			if err := r.loadTail(ctx); err != nil {
				return err
			}
		}
		rec.OccurredAt = r.now().UTC()
		rec.Prev = r.lastHash
		data, err := encode(rec)
		if err != nil {
			return err
		}
		ack, err := r.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: data}, jetstream.WithExpectLastSequence(r.lastSeq))
		if err == nil {
			r.lastSeq, r.lastHash = ack.Sequence, Hash(data)
			return nil
		}
		if !wrongLastSequence(err) {
			return fmt.Errorf("audit record: %w", err)
		}
		r.known = false // another writer came first: link to its record
	}
	return errors.New("audit record: the stream's tail kept moving")
}

// loadTail reads the stream's last record, the next one's link.
func (r *Recorder) loadTail(ctx context.Context) error {
	info, err := r.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("audit stream info: %w", err)
	}
	r.lastSeq, r.lastHash = info.State.LastSeq, ""
	if info.State.LastSeq > 0 && info.State.Msgs > 0 {
		m, err := r.stream.GetMsg(ctx, info.State.LastSeq)
		switch {
		case err == nil:
			r.lastHash = Hash(m.Data)
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return fmt.Errorf("audit stream tail: %w", err)
		}
	}
	r.known = true
	return nil
}

func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
