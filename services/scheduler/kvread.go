package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Reads at the bucket's stream leader.
//
// KeyValue.Get uses a direct get, which any replica of a replicated bucket
// may answer, including a follower that has not applied a write the
// client's previous request made through another node. In a cluster that
// showed up as "PUT /api/jobs/x" followed by "POST /api/schedules" naming x
// answered 400 "unknown job_id" (the two requests reached different
// nodes' scheduler services). The JetStream API's STREAM.MSG.GET is
// answered by the leader alone, which has every acknowledged write, so the
// catalog reads its own writes at the cost of a hop to the leader: fine for
// operator requests, and the engine's hot path keeps its watched mirror.

// kvEntry is what a catalog read needs of a KV entry.
type kvEntry struct {
	value    []byte
	revision uint64
	deleted  bool // a delete or purge marker
}

// leaderLast reads the newest message of the bucket's stream on subject
// (which may be a wildcard) from the stream leader. It goes through the
// older JetStreamContext API on purpose: its GetLastMsg uses STREAM.MSG.GET
// unless asked for a direct get, where the jetstream package's Stream
// switches to a direct get whenever the stream allows them (KV buckets do).
// nats.ErrMsgNotFound when the subject has no message.
func leaderLast(ctx context.Context, js jetstream.JetStream, bucket, subject string) (kvEntry, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	legacy, err := js.Conn().JetStream()
	if err != nil {
		return kvEntry{}, err
	}
	m, err := legacy.GetLastMsg("KV_"+bucket, subject, nats.Context(ctx))
	if err != nil {
		return kvEntry{}, fmt.Errorf("read %s from the stream leader: %w", subject, err)
	}
	// A delete or purge is stored as a marker message, not removed.
	op := m.Header.Get("KV-Operation")
	return kvEntry{value: m.Data, revision: m.Sequence, deleted: op == "DEL" || op == "PURGE"}, nil
}

// leaderGet reads key of bucket at the stream leader.
func leaderGet(ctx context.Context, js jetstream.JetStream, bucket, key string) (kvEntry, error) {
	// A key is one subject token path without wildcards: "*" or "a.>"
	// would match, and return, some other key.
	if !validID(key) {
		return kvEntry{}, jetstream.ErrKeyNotFound
	}
	e, err := leaderLast(ctx, js, bucket, "$KV."+bucket+"."+key)
	if errors.Is(err, nats.ErrMsgNotFound) || err == nil && e.deleted {
		return kvEntry{}, jetstream.ErrKeyNotFound
	}
	return e, err
}

// leaderLastRevision is the revision of the newest message of the bucket,
// a delete marker included (0 when empty), as the leader has it: a list
// that has seen it has seen every write acknowledged before it began. It
// is a live message, so a watcher delivers it, even after markers were
// purged or messages removed.
func leaderLastRevision(ctx context.Context, js jetstream.JetStream, bucket string) (uint64, error) {
	e, err := leaderLast(ctx, js, bucket, "$KV."+bucket+".>")
	if errors.Is(err, nats.ErrMsgNotFound) {
		return 0, nil
	}
	return e.revision, err
}

// readKey reads key from kv at the bucket's stream leader when js is set,
// else through the bucket (tests on one server, where every read is
// consistent anyway).
func readKey(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, key string) (kvEntry, error) {
	if js == nil {
		e, err := kv.Get(ctx, key)
		if err != nil {
			return kvEntry{}, err
		}
		return kvEntry{value: e.Value(), revision: e.Revision()}, nil
	}
	return leaderGet(ctx, js, kv.Bucket(), key)
}

func (c *Catalog) kvGet(ctx context.Context, kv jetstream.KeyValue, key string) (kvEntry, error) {
	return readKey(ctx, c.JS, kv, key)
}
