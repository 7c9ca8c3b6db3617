package scheduler

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/kvwatch"
)

// Mirror keeps a decoded copy of a KV bucket, fed by a watcher, so that a
// fire reads the current job or group membership without a round trip.
// An edit shows within a watcher delivery, milliseconds.
type Mirror[T any] struct {
	name string
	mu   sync.RWMutex
	m    map[string]T
}

// WatchMirror starts mirroring kv until ctx ends; wg tracks the goroutine.
// A value that does not decode as T is left out, and logged.
func WatchMirror[T any](ctx context.Context, kv jetstream.KeyValue, wg *sync.WaitGroup, log *slog.Logger) (*Mirror[T], error) {
	mi := &Mirror[T]{name: kv.Bucket(), m: map[string]T{}}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := kvwatch.Follow(wctx, ctx, kv, wg, log, func(e jetstream.KeyValueEntry) { mi.apply(e, log) }); err != nil {
		return nil, err
	}
	return mi, nil
}

// Get is the current value of key.
func (mi *Mirror[T]) Get(key string) (T, bool) {
	var zero T
	if mi == nil {
		return zero, false
	}
	mi.mu.RLock()
	defer mi.mu.RUnlock()
	v, ok := mi.m[key]
	return v, ok
}

func (mi *Mirror[T]) apply(e jetstream.KeyValueEntry, log *slog.Logger) {
	mi.mu.Lock()
	defer mi.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(mi.m, e.Key())
		return
	}
	var v T
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		log.Warn("kv value does not decode; ignored", "bucket", mi.name, "key", e.Key(), "err", err)
		delete(mi.m, e.Key())
		return
	}
	mi.m[e.Key()] = v
}
