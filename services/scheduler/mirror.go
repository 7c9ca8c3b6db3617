package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
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
	name := kv.Bucket()
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", name, err)
	}
	mi := &Mirror[T]{name: name, m: map[string]T{}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil { // nil marks the end of the initial values
					mi.apply(e, log)
				}
			}
		}
	}()
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
