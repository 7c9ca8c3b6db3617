package streams

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/wire"
)

// ScriptBuckets are the KV buckets agents read as gates (script_status,
// script_current), history 5 as upstream's bootstrap makes them.
var ScriptBuckets = []string{wire.BucketScriptStatus, wire.BucketScriptCurrent}

func ensureScriptBuckets(ctx context.Context, js jetstream.JetStream, replicas int) error {
	for _, b := range ScriptBuckets {
		if _, err := js.KeyValue(ctx, b); err == nil {
			continue
		} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("look up kv %s: %w", b, err)
		}
		if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: b, History: 5, Storage: jetstream.FileStorage, Replicas: replicas,
		}); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("create kv %s: %w", b, err)
		}
	}
	return nil
}
