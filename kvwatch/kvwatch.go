// Package kvwatch keeps an in-memory mirror of a KV bucket current: one
// goroutine follows every key and hands each put or delete, in order, to
// the mirror's apply. The agents' metadata, the groups roster and the
// simulated fleet's buckets all follow their buckets this way.
package kvwatch

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// reopenEvery is how long a closed watcher waits before it watches again.
const reopenEvery = 5 * time.Second

// Follow watches every key of kv until bg ends and calls apply for each
// entry, from one goroutine that wg tracks. It returns once the bucket's
// current values have been applied, or with ctx's error (the goroutine
// then goes on until bg ends). A watcher whose channel closes is opened
// again: a mirror that stopped would stay stale until a restart.
func Follow(ctx, bg context.Context, kv jetstream.KeyValue, wg *sync.WaitGroup, log *slog.Logger, apply func(jetstream.KeyValueEntry)) error {
	w, err := kv.WatchAll(bg)
	if err != nil {
		return fmt.Errorf("watch %s: %w", kv.Bucket(), err)
	}
	ready := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { w.Stop() }()
		once := sync.OnceFunc(func() { close(ready) })
		for {
			select {
			case <-bg.Done():
				return
			case e, ok := <-w.Updates():
				switch {
				case !ok:
					nw := reopen(bg, kv, log)
					if nw == nil {
						return
					}
					w = nw
				case e == nil:
					once() // the current values are in
				default:
					apply(e)
				}
			}
		}
	}()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("watch %s: %w", kv.Bucket(), ctx.Err())
	}
}

// reopen watches kv again, every reopenEvery until it can or bg ends (nil).
func reopen(bg context.Context, kv jetstream.KeyValue, log *slog.Logger) jetstream.KeyWatcher {
	log.Warn("kv watcher closed; reopening", "bucket", kv.Bucket())
	for {
		select {
		case <-bg.Done():
			return nil
		case <-time.After(reopenEvery):
		}
		w, err := kv.WatchAll(bg)
		if err == nil {
			return w
		}
		log.Warn("kv watcher: reopen", "bucket", kv.Bucket(), "err", err)
	}
}
