package projector

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/wire"
)

// Bounds of an output object read. An agent writes the object's meta
// (its size, chunk count, links) and names the key: nothing it says is
// trusted past these.
const (
	// MaxObjectKey bounds the key a result names (a contract key is
	// `{request_id}/stdout`, 43 bytes, or that plus `.rN`). A 3,000-byte
	// key made a request line the server closed the connection over.
	MaxObjectKey = 512
	// MaxObjectSize is the agents' 8 MiB cap on a captured stream, plus
	// room for their truncation marker.
	MaxObjectSize = 8<<20 + 64<<10
	// MaxObjectChunks bounds the chunks read (the default chunk is 128 KiB,
	// so a capped output is 65 of them).
	MaxObjectChunks = 4096
	// DefaultObjectDeadline bounds the whole read of one object, retries
	// and the one link hop included: under the results gate's default 10 s
	// leave lag, so one object cannot take a node's read services down.
	DefaultObjectDeadline = 5 * time.Second
)

// Defaults of the redelivery of a result whose output object could not
// be read yet (see Options.ObjectAttempts).
const (
	DefaultObjectAttempts = 3
	DefaultObjectBackoff  = time.Second
	maxObjectBackoff      = 30 * time.Second
)

// badObject is an object that will never read as an output: the result
// is stored with a note, and the message is also recorded as a reject.
type badObject struct{ reason string }

func (e *badObject) Error() string { return e.reason }

func bad(format string, a ...any) error { return &badObject{reason: fmt.Sprintf(format, a...)} }

// objectAgain is an object not read on this attempt for a reason that
// may pass (a timeout, an object not there yet, a NATS error): the message
// is delivered again after a backoff, until the last attempt.
type objectAgain struct {
	key    string
	reason string
}

func (e *objectAgain) Error() string {
	return fmt.Sprintf("output object %s: %s", shortKey(e.key), e.reason)
}

// objectTry is one attempt at the outputs of a result.
type objectTry struct {
	published time.Time // the result's publish time
	attempt   int       // 1 for the first delivery
	final     bool      // no attempt follows: a passing failure is a note too
}

// readOutput fetches an output the agent moved to the object store. One
// attempt never blocks longer than the object deadline.
//
// A failure that will not pass (the bucket is gone, the object was
// deleted or aged out of the store, or its meta is bad) leaves a note in
// the output at once; a bad meta or a timeout also returns the reason, for
// the reject. A failure that may pass returns *objectAgain unless the try
// is the last one, which leaves the note (naming the attempts) instead. A
// stop (ctx ends) returns inline and no reason: the batch is not committed
// then.
func (p *Projector) readOutput(ctx context.Context, key, inline string, try objectTry) (string, error) {
	note := func(why string) string {
		return inline + fmt.Sprintf("\n[kanade: output object %s/%s %s]\n", wire.ObjectStoreOutput, shortKey(key), why)
	}
	after := ""
	if try.attempt > 1 {
		after = fmt.Sprintf(" after %d attempts", try.attempt)
	}
	deadline := p.o.ObjectDeadline
	dctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	backoff := 200 * time.Millisecond
	for {
		b, err := p.readObject(dctx, key)
		var bo *badObject
		switch {
		case err == nil:
			return string(b), nil
		case ctx.Err() != nil:
			return inline, nil
		case errors.As(err, &bo):
			return note("not read: " + bo.reason), fmt.Errorf("output object %s: %s", shortKey(key), bo.reason)
		case errors.Is(err, jetstream.ErrBucketNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
			return note("not found (no bucket)"), nil
		case errors.Is(err, jetstream.ErrObjectNotFound):
			if gone := p.objectGone(dctx, key, try.published); gone != "" {
				return note("not found (" + gone + ")"), nil
			}
			if !try.final {
				return "", &objectAgain{key: key, reason: "not found (not uploaded yet?)"}
			}
			return note("not found" + after), nil
		case dctx.Err() != nil:
			reason := fmt.Sprintf("not read within %s: %v", deadline, err)
			if !try.final {
				return "", &objectAgain{key: key, reason: reason}
			}
			reason = fmt.Sprintf("not read%s, the last %s", after, reason)
			return note(reason), fmt.Errorf("output object %s: %s", shortKey(key), reason)
		}
		p.log.Warn("projector: read output object; retrying", "key", shortKey(key), "err", err)
		if !sleep(dctx, backoff) {
			continue // the next round reports the deadline (or the stop)
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// objectGone says why an object that is not found will not come: it was
// deleted, or the object store no longer holds anything as old as the
// result (the agent writes the object before the result, so the object
// aged out or was pushed out by the store's limits). "" when it may still
// come: the agent's upload, or the object store's replica, is behind.
func (p *Projector) objectGone(ctx context.Context, key string, published time.Time) string {
	if obs, err := p.outputStore(ctx); err == nil {
		if info, err := obs.GetInfo(ctx, key, jetstream.GetObjectInfoShowDeleted()); err == nil && info.Deleted {
			return "deleted"
		}
	}
	st, err := p.outputStream(ctx)
	if err != nil {
		return ""
	}
	si, err := st.Info(ctx)
	if err != nil {
		return ""
	}
	if first := si.State.FirstTime; !published.IsZero() && published.Before(first) {
		return "expired: the store's oldest message is newer than the result"
	}
	return ""
}

// objectBackoff is the wait before delivery attempt+1 of a result whose
// object was not read on attempt.
func (p *Projector) objectBackoff(attempt int) time.Duration {
	d := p.o.ObjectBackoff
	for i := 1; i < attempt && d < maxObjectBackoff; i++ {
		d *= 2
	}
	return min(d, maxObjectBackoff)
}

func shortKey(k string) string {
	if len(k) > 80 {
		return k[:80] + "…"
	}
	return k
}

// readObject reads key within the bounds, following at most one link
// (within the bucket).
func (p *Projector) readObject(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	obs, err := p.outputStore(ctx)
	if err != nil {
		return nil, err
	}
	info, err := obs.GetInfo(ctx, key)
	if err != nil {
		return nil, err
	}
	if link := info.Opts; link != nil && link.Link != nil {
		l := link.Link
		switch {
		case l.Bucket != wire.ObjectStoreOutput:
			return nil, bad("links to bucket %q; only links within %s are followed", shortKey(l.Bucket), wire.ObjectStoreOutput)
		case l.Name == "":
			return nil, bad("links to a whole bucket")
		}
		if err := checkKey(l.Name); err != nil {
			return nil, bad("links to a bad key: %v", err)
		}
		if info, err = obs.GetInfo(ctx, l.Name); err != nil {
			return nil, err
		}
		if info.Opts != nil && info.Opts.Link != nil {
			return nil, bad("links to a link (one hop is followed)")
		}
	}
	return p.readChunks(ctx, info)
}

func checkKey(key string) error {
	switch {
	case key == "":
		return bad("empty key")
	case len(key) > MaxObjectKey:
		return bad("key of %d bytes exceeds %d", len(key), MaxObjectKey)
	}
	return nil
}

// readChunks reads an object's chunks, checking first that the store holds
// as many as the meta says, and then their size and digest.
func (p *Projector) readChunks(ctx context.Context, info *jetstream.ObjectInfo) ([]byte, error) {
	switch {
	case info.Size > MaxObjectSize:
		return nil, bad("size %d exceeds the agents' cap (%d)", info.Size, MaxObjectSize)
	case info.Chunks > MaxObjectChunks:
		return nil, bad("%d chunks exceed %d", info.Chunks, MaxObjectChunks)
	case info.NUID == "" || len(info.NUID) > 64 || !wire.ValidToken(info.NUID):
		return nil, bad("meta names no valid chunk subject")
	case info.Size == 0 && info.Chunks == 0:
		return []byte{}, nil
	case info.Chunks == 0:
		return nil, bad("meta says %d bytes in no chunks", info.Size)
	}
	st, err := p.outputStream(ctx)
	if err != nil {
		return nil, err
	}
	subj := "$O." + wire.ObjectStoreOutput + ".C." + info.NUID
	si, err := st.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return nil, err
	}
	if have := si.State.Subjects[subj]; have != uint64(info.Chunks) {
		return nil, bad("meta says %d chunks, the store holds %d", info.Chunks, have)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, info.Size)
	h := sha256.New()
	for n := uint32(0); n < info.Chunks; {
		batch, err := cons.Fetch(int(info.Chunks-n), jetstream.FetchContext(ctx))
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			n++
			if uint64(len(out)+len(m.Data())) > info.Size {
				return nil, bad("chunks hold more than the meta's %d bytes", info.Size)
			}
			out = append(out, m.Data()...)
			h.Write(m.Data())
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if got == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	if uint64(len(out)) != info.Size {
		return nil, bad("chunks hold %d bytes, the meta says %d", len(out), info.Size)
	}
	if d := info.Digest; d != "" {
		sum := h.Sum(nil)
		if d != "SHA-256="+base64.URLEncoding.EncodeToString(sum) && d != "SHA-256="+base64.RawURLEncoding.EncodeToString(sum) {
			return nil, bad("digest does not match the chunks")
		}
	}
	return out, nil
}

// outputStream is the object store's stream, looked up once.
func (p *Projector) outputStream(ctx context.Context) (jetstream.Stream, error) {
	p.outputsMu.Lock()
	defer p.outputsMu.Unlock()
	if p.outputStr == nil {
		st, err := p.js.Stream(ctx, "OBJ_"+wire.ObjectStoreOutput)
		if err != nil {
			return nil, err
		}
		p.outputStr = st
	}
	return p.outputStr, nil
}
