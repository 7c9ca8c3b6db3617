package kvwatch_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/kvwatch"
	"github.com/kanade-go/kanade/nodetest"
)

// Follow returns with the current values applied, goes on applying puts
// and deletes in order, and its goroutine ends with bg.
func TestFollow(t *testing.T) {
	n := nodetest.Start(t)
	js := n.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "follow"})
	if err != nil {
		t.Fatal(err)
	}
	kv.Put(ctx, "a", []byte("1"))
	kv.Put(ctx, "b", []byte("2"))
	var mu sync.Mutex
	m := map[string]string{}
	bg, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	err = kvwatch.Follow(ctx, bg, kv, &wg, n.Logger, func(e jetstream.KeyValueEntry) {
		mu.Lock()
		defer mu.Unlock()
		if e.Operation() == jetstream.KeyValuePut {
			m[e.Key()] = string(e.Value())
		} else {
			delete(m, e.Key())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if m["a"] != "1" || m["b"] != "2" {
		t.Fatalf("current values not in at return: %v", m)
	}
	mu.Unlock()
	kv.Put(ctx, "c", []byte("3"))
	kv.Delete(ctx, "a")
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		_, hasA := m["a"]
		done := m["c"] == "3" && !hasA
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("live put and delete not applied: %v", m)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	wg.Wait()
}
