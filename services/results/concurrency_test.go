package results

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanade-go/kanade/services/api"
)

// Searches in flight (every heavy slot held) must not hold back detail,
// tail or a plain first-page list.
func TestSlowSearchesDoNotBlockDetail(t *testing.T) {
	const heavy = 2
	entered := make(chan struct{}, heavy+1)
	release := make(chan struct{})
	testHookHeavy = func(ctx context.Context) {
		entered <- struct{}{}
		<-release
	}
	t.Cleanup(func() { testHookHeavy = nil })
	e := start(t, Options{HeavyQueries: heavy, Workers: 4})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the service stops, even when the test fails
	insert(t, e.n.DB,
		rec{id: "r1", pc: "PC1", exit: code(0), stdout: "x", started: t0, finished: t0},
		rec{id: "r2", pc: "PC2", exit: code(1), started: t0.Add(time.Second), finished: t0.Add(time.Second)},
	)
	type reply struct {
		code string
		body []byte
	}
	searches := make(chan reply, heavy+1)
	for i := range heavy + 1 { // one more than the slots: it waits its turn
		go func() {
			m, err := e.nc.Request("kanade.results.list", fmt.Appendf(nil, `{"stdout":"x","limit":%d}`, i+1), 30*time.Second)
			if err != nil {
				searches <- reply{code: err.Error()}
				return
			}
			searches <- reply{m.Header.Get("Nats-Service-Error-Code"), m.Data}
		}()
	}
	for range heavy {
		select {
		case <-entered:
		case r := <-searches:
			t.Fatalf("a search answered before taking its slot: %s %s", r.code, r.body)
		}
	}
	// Both slots are held by searches that cannot finish yet.
	for range 3 {
		if c, b := e.call(t, "kanade.results.detail", `{"result_id":"r1"}`); c != "" || !strings.Contains(string(b), `"pc_id":"PC1"`) {
			t.Fatalf("detail while searches run: %s %s", c, b)
		}
		if got := ids(e.list(t, nil)); len(got) != 2 {
			t.Fatalf("plain list while searches run: %v", got)
		}
		if c, _ := e.call(t, "kanade.results.tail", `{"result_id":"r2"}`); c != "" {
			t.Fatalf("tail while searches run: %s", c)
		}
	}
	select {
	case r := <-searches:
		t.Fatalf("a search answered while held: %s %s", r.code, r.body)
	default:
	}
	unblock()
	for range heavy + 1 {
		r := <-searches
		if r.code != "" || !strings.Contains(string(r.body), `"r1"`) {
			t.Errorf("search: %s %s", r.code, r.body)
		}
	}
}

// A query still running at the request deadline is interrupted and
// answers 503 with a hint, not a 500 and not a late answer.
func TestDeadlineIs503(t *testing.T) {
	testHookHeavy = func(ctx context.Context) { <-ctx.Done() } // outlive the deadline
	t.Cleanup(func() { testHookHeavy = nil })
	e := start(t, Options{Timeout: 200 * time.Millisecond})
	insert(t, e.n.DB, rec{id: "r1", pc: "PC1", stdout: "x", started: t0})
	c, b := e.call(t, "kanade.results.list", `{"stdout":"x"}`)
	if c != "503" || !strings.Contains(string(b), "narrow `since`") {
		t.Fatalf("got %s %s", c, b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := List(ctx, e.n.DB, Params{PCID: "PC"})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 503 {
		t.Fatalf("direct with a dead context: %v", err)
	}
}
