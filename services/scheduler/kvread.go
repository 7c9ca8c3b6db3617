package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// kvEntry is what a catalog read needs of a KV entry.
type kvEntry struct {
	value    []byte
	revision uint64
}

// leaderGet reads the newest value of key in bucket from the bucket
// stream's leader.
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
func leaderGet(ctx context.Context, js jetstream.JetStream, bucket, key string) (kvEntry, error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": "$KV." + bucket + "." + key})
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
	subj := prefix + "STREAM.MSG.GET.KV_" + bucket
	msg, err := js.Conn().RequestWithContext(ctx, subj, req)
	if err != nil {
		return kvEntry{}, fmt.Errorf("read %s/%s from the stream leader: %w", bucket, key, err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
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
		return kvEntry{}, fmt.Errorf("read %s/%s: bad reply: %w", bucket, key, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == uint16(jetstream.JSErrCodeMessageNotFound) {
			return kvEntry{}, jetstream.ErrKeyNotFound
		}
		return kvEntry{}, fmt.Errorf("read %s/%s: %s (%d)", bucket, key, resp.Error.Description, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return kvEntry{}, fmt.Errorf("read %s/%s: empty reply", bucket, key)
	}
	if len(resp.Message.Hdrs) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Hdrs)
		if err != nil {
			return kvEntry{}, fmt.Errorf("read %s/%s: headers: %w", bucket, key, err)
		}
		// A delete or purge is stored as a marker message, not removed.
		if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			return kvEntry{}, jetstream.ErrKeyNotFound
		}
	}
	return kvEntry{value: resp.Message.Data, revision: resp.Message.Seq}, nil
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
