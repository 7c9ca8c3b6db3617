package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// kind is what a stream carries.
type kind int

const (
	kindResult kind = iota
	kindStarted
	kindExecution
)

// item is one delivered message, decoded, or the reason it cannot be.
type item struct {
	msg       jetstream.Msg
	seq       uint64
	subject   string
	published time.Time
	pending   uint64

	result  *wire.ExecResult
	started *wire.EventStarted
	exec    *streams.ExecutionRecord
	reject  error
	outputs *encodedOutputs // result's outputs as stored, when compressed
	// objReject is why an output object could not be read: the result is
	// stored with a note, and the message recorded as a reject as well.
	objReject error
	payload   []byte // kept for a reject
	size      int
}

// ObjectRetry is a result whose output object was not read on its
// delivery attempt, for a reason that may pass.
type ObjectRetry struct {
	Seq      uint64 `json:"seq"`
	Attempts int    `json:"attempts"` // made so far
	Reason   string `json:"reason"`
}

// decode turns messages into items, reading large outputs back from the
// object store. It stops before a result whose output object could not be
// read yet and attempts remain, returning the items before it and the
// retry: that message and the ones after it are delivered again. It only
// fails (returning nil) when ctx ends.
func (s *stream) decode(ctx context.Context, msgs []jetstream.Msg) ([]item, *ObjectRetry) {
	items := make([]item, 0, len(msgs))
	applied := s.applied.Load()
	for _, m := range msgs {
		it := item{msg: m, subject: m.Subject(), size: len(m.Data())}
		md, err := m.Metadata()
		if err != nil {
			// Without a sequence the message cannot be placed; it is acked
			// and dropped (it cannot come from a stream consumer anyway).
			s.log.Warn("projector: message without metadata dropped", "subject", it.subject, "err", err)
			it.reject = err
			items = append(items, it)
			continue
		}
		it.seq, it.published, it.pending = md.Sequence.Stream, md.Timestamp, md.NumPending
		if it.seq > s.delivered.Load() {
			s.delivered.Store(it.seq)
		}
		if it.seq <= applied {
			items = append(items, it) // applied before: only acked
			continue
		}
		data := m.Data()
		if len(data) > s.p.o.MaxPayload {
			it.reject = fmt.Errorf("payload of %d bytes exceeds the limit of %d", len(data), s.p.o.MaxPayload)
		} else {
			try := objectTry{published: it.published, attempt: 1}
			if r := s.retry; r != nil && r.Seq == it.seq {
				try.attempt = r.Attempts + 1
			}
			try.final = try.attempt >= s.p.o.ObjectAttempts
			it.reject = s.decodeOne(ctx, &it, data, try)
			if again, ok := errors.AsType[*objectAgain](it.reject); ok {
				return items, &ObjectRetry{Seq: it.seq, Attempts: try.attempt, Reason: again.Error()}
			}
			if s.retry != nil && s.retry.Seq == it.seq {
				s.setRetry(nil)
			}
		}
		if it.reject == nil && it.result != nil && !s.p.o.PlainOutputs {
			// Compressed here, beside the writer rather than in its
			// transaction (see applyResult).
			it.outputs = encodeOutputs(it.result)
		}
		// Kept for a reject, which apply may also decide (another pc_id).
		it.payload = data[:min(len(data), rejectPrefix)]
		items = append(items, it)
	}
	return items, nil
}

func (s *stream) decodeOne(ctx context.Context, it *item, data []byte, try objectTry) error {
	switch s.kind {
	case kindResult:
		r, err := wire.DecodeResult(data)
		if err != nil {
			return err
		}
		var errOut, errErr error
		if r.StdoutObject != nil && *r.StdoutObject != "" {
			if r.Stdout, errOut = s.p.readOutput(ctx, *r.StdoutObject, r.Stdout, try); isAgain(errOut) {
				return errOut
			}
		}
		if r.StderrObject != nil && *r.StderrObject != "" {
			if r.Stderr, errErr = s.p.readOutput(ctx, *r.StderrObject, r.Stderr, try); isAgain(errErr) {
				return errErr
			}
		}
		it.objReject = errors.Join(errOut, errErr)
		it.result = &r
	case kindStarted:
		e, err := wire.DecodeStarted(data)
		if err != nil {
			return err
		}
		// events.started.{exec_id}.{pc_id}: the subject's pc_id is the
		// sender's (its NATS account may publish only its own).
		if pc := subjectPC(it.subject); pc != e.PCID {
			return fmt.Errorf("EventStarted pc_id %q differs from its subject's %q", e.PCID, pc)
		}
		it.started = &e
	case kindExecution:
		var e streams.ExecutionRecord
		if err := json.Unmarshal(data, &e); err != nil {
			return fmt.Errorf("decode ExecutionRecord: %w", err)
		}
		if e.ExecID == "" {
			return errors.New("decode ExecutionRecord: missing exec_id")
		}
		if e.JobID == "" {
			return errors.New("decode ExecutionRecord: missing job_id")
		}
		it.exec = &e
	}
	return nil
}

func isAgain(err error) bool {
	_, ok := errors.AsType[*objectAgain](err)
	return ok
}

// outputStore returns the output bucket's handle, looked up once: the
// lookup is a server round trip, and a rebuild reads many objects.
func (p *Projector) outputStore(ctx context.Context) (jetstream.ObjectStore, error) {
	p.outputsMu.Lock()
	defer p.outputsMu.Unlock()
	if p.outputs == nil {
		obs, err := p.js.ObjectStore(ctx, wire.ObjectStoreOutput)
		if err != nil {
			return nil, err
		}
		p.outputs = obs
	}
	return p.outputs, nil
}

// subjectPC is the last token of events.started.{exec_id}.{pc_id}.
func subjectPC(subject string) string {
	if i := strings.LastIndexByte(subject, '.'); i >= 0 {
		return subject[i+1:]
	}
	return ""
}
