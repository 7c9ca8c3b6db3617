package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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

// errNoMessage is the leader's "no message" for a subject.
var errNoMessage = errors.New("no message")

// leaderLast reads the newest message of the bucket's stream on subject
// (which may be a wildcard) from the stream leader.
func leaderLast(ctx context.Context, js jetstream.JetStream, bucket, subject string) (kvEntry, error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": subject})
	if err != nil {
		return kvEntry{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	// Options().APIPrefix is set only when the caller chose one (the
	// backend does not); an empty one means the default.
	prefix := js.Options().APIPrefix
	if prefix == "" {
		prefix = jetstream.DefaultAPIPrefix
	} else if !strings.HasSuffix(prefix, ".") {
		prefix += "."
	}
	msg, err := js.Conn().RequestWithContext(ctx, prefix+"STREAM.MSG.GET.KV_"+bucket, req)
	if err != nil {
		return kvEntry{}, fmt.Errorf("read %s from the stream leader: %w", subject, err)
	}
	var resp struct {
		Error *struct {
			ErrCode     uint16 `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq  uint64 `json:"seq"`
			Hdrs []byte `json:"hdrs"`
			Data []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return kvEntry{}, fmt.Errorf("read %s: bad reply: %w", subject, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == uint16(jetstream.JSErrCodeMessageNotFound) {
			return kvEntry{}, errNoMessage
		}
		return kvEntry{}, fmt.Errorf("read %s: %s (%d)", subject, resp.Error.Description, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return kvEntry{}, fmt.Errorf("read %s: empty reply", subject)
	}
	e := kvEntry{value: resp.Message.Data, revision: resp.Message.Seq}
	if len(resp.Message.Hdrs) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Hdrs)
		if err != nil {
			return kvEntry{}, fmt.Errorf("read %s: headers: %w", subject, err)
		}
		// A delete or purge is stored as a marker message, not removed.
		op := h.Get("KV-Operation")
		e.deleted = op == "DEL" || op == "PURGE"
	}
	return e, nil
}

// leaderGet reads key of bucket at the stream leader.
func leaderGet(ctx context.Context, js jetstream.JetStream, bucket, key string) (kvEntry, error) {
	// A key is one subject token path without wildcards: "*" or "a.>"
	// would match, and return, some other key.
	if !validID(key) {
		return kvEntry{}, jetstream.ErrKeyNotFound
	}
	e, err := leaderLast(ctx, js, bucket, "$KV."+bucket+"."+key)
	if errors.Is(err, errNoMessage) || err == nil && e.deleted {
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
	if errors.Is(err, errNoMessage) {
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
