package sim

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/wire"
)

// Uploaders racing for one base key, each on its own connection as
// separate agents are, each end with a key of their own holding their
// content; identical content reuses the key; a retry keeps its reservation.
func TestPutNoOverwrite(t *testing.T) {
	n := nodetest.Start(t)
	ctx := context.Background()
	const uploaders = 8
	base := "req-1/stdout"
	data := func(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("output of uploader %d\n", i)), 1000) }

	keys := make([]string, uploaders)
	errs := make([]error, uploaders)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range uploaders {
		js := n.JetStream(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var claimed string
			keys[i], errs[i] = putNoOverwrite(ctx, js, wire.ObjectStoreOutput, base, data(i), &claimed)
		}()
	}
	close(start)
	wg.Wait()

	js := n.JetStream(t)
	obs, err := js.ObjectStore(ctx, wire.ObjectStoreOutput)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if errs[i] != nil {
			t.Fatalf("uploader %d: %v", i, errs[i])
		}
		got, err := obs.GetBytes(ctx, k)
		if err != nil || !bytes.Equal(got, data(i)) {
			t.Errorf("uploader %d: key %s holds %.30q (%v), not its output", i, k, got, err)
		}
	}
	sorted := slices.Sorted(slices.Values(keys))
	if len(slices.Compact(sorted)) != uploaders {
		t.Errorf("keys %v: some uploaders share one", keys)
	}

	// The same content again (a retried upload, or another agent with the
	// same output) reuses its key.
	var claimed string
	if k, err := putNoOverwrite(ctx, js, wire.ObjectStoreOutput, base, data(3), &claimed); err != nil || k != keys[3] || claimed != "" {
		t.Errorf("identical content: key %s claimed %q (%v), want %s", k, claimed, err, keys[3])
	}

	// A reservation made by an earlier try of the same upload is used,
	// not skipped.
	next := fmt.Sprintf("%s.r%d", base, uploaders)
	if won, err := reserve(ctx, js, wire.ObjectStoreOutput, next); err != nil || !won {
		t.Fatalf("reserve %s: %v %v", next, won, err)
	}
	if won, err := reserve(ctx, js, wire.ObjectStoreOutput, next); err != nil || won {
		t.Fatalf("reserve %s twice: %v %v", next, won, err)
	}
	claimed = next
	if k, err := putNoOverwrite(ctx, js, wire.ObjectStoreOutput, base, []byte("retried"), &claimed); err != nil || k != next {
		t.Errorf("retried upload went to %s (%v), want its reservation %s", k, err, next)
	}
	if got, _ := obs.GetBytes(ctx, next); string(got) != "retried" {
		t.Errorf("%s holds %q", next, got)
	}
}
