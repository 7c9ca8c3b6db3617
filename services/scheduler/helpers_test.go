package scheduler

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/wire"
)

// fakeClock is a Clock the test moves by hand.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	armed  chan struct{} // signalled whenever a timer is made
}

type fakeTimer struct {
	c  *fakeClock
	at time.Time
	ch chan time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, armed: make(chan struct{}, 1)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) NewTimer(d time.Duration) Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{c: f, at: f.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- f.now
	} else {
		f.timers = append(f.timers, t)
	}
	select {
	case f.armed <- struct{}{}:
	default:
	}
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	f := t.c
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.timers {
		if x == t {
			f.timers = append(f.timers[:i], f.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Set moves the clock to now and fires the timers that are due.
func (f *fakeClock) Set(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
	kept := f.timers[:0]
	for _, t := range f.timers {
		if !t.at.After(now) {
			t.ch <- now
		} else {
			kept = append(kept, t)
		}
	}
	f.timers = kept
}

// waitArmed waits until some timer is set for at: the engine has taken in
// a schedule whose next tick is at.
func (f *fakeClock) waitArmed(t testing.TB, at time.Time) { f.waitArmedN(t, at, 1) }

// waitArmedN waits until n timers are set for at (n engines on the clock).
func (f *fakeClock) waitArmedN(t testing.TB, at time.Time, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		k := 0
		for _, x := range f.timers {
			if x.at.Equal(at) {
				k++
			}
		}
		if k >= n {
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		select {
		case <-f.armed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no timer armed for %v", at)
		}
	}
}

// startScheduler starts a scheduler on its own connection, stopped at the
// end of the test.
func startScheduler(t *testing.T, n *nodetest.Node, name string, clock Clock) *Scheduler {
	t.Helper()
	s, err := Start(context.Background(), Options{
		Conn: n.Conn(t), DB: n.DB, NodeName: name, Logger: n.Logger, Clock: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// call makes a request as the gateway would and returns the status (200 for
// success) and the body.
func call(t *testing.T, nc *nats.Conn, subject, contentType, body string) (int, string) {
	t.Helper()
	msg := nats.NewMsg(subject)
	msg.Data = []byte(body)
	if contentType != "" {
		msg.Header.Set("Content-Type", contentType)
	}
	reply, err := nc.RequestMsg(msg, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	if code := reply.Header.Get("Nats-Service-Error-Code"); code != "" {
		c, _ := strconv.Atoi(code)
		return c, string(reply.Data)
	}
	return 200, string(reply.Data)
}

// mustCall is call that expects success.
func mustCall(t *testing.T, nc *nats.Conn, subject, contentType, body string) string {
	t.Helper()
	code, out := call(t, nc, subject, contentType, body)
	if code != 200 {
		t.Fatalf("%s %s: %d %s", subject, body, code, out)
	}
	return out
}

const echoJob = `{"id":"echo","version":"1.0.0","execute":{"shell":"sh","script":"echo kanade","timeout":"30s"}}`

// commandSub collects the Commands published on subject.
type commandSub struct {
	ch chan *nats.Msg
}

func subscribeCommands(t *testing.T, nc *nats.Conn, subject string) *commandSub {
	t.Helper()
	c := &commandSub{ch: make(chan *nats.Msg, 1024)}
	sub, err := nc.ChanSubscribe(subject, c.ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return c
}

// next waits for the next Command and checks its contract shape.
func (c *commandSub) next(t *testing.T) (wire.Command, *nats.Msg) {
	t.Helper()
	select {
	case m := <-c.ch:
		return checkCommandShape(t, m.Data), m
	case <-time.After(15 * time.Second):
		t.Fatal("no command published")
	}
	panic("unreachable")
}

// none checks that nothing more was published, after a round trip on nc
// so that anything already sent has arrived.
func (c *commandSub) none(t *testing.T, nc *nats.Conn) {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case m := <-c.ch:
		t.Fatalf("unexpected command on %s: %s", m.Subject, m.Data)
	default:
	}
}

// checkCommandShape checks the wire contract's Command JSON: the required
// keys, their JSON types, and nothing outside the contract.
func checkCommandShape(t *testing.T, data []byte) wire.Command {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("command is not a JSON object: %v: %s", err, data)
	}
	str := func(k string) {
		if _, ok := raw[k].(string); !ok {
			t.Errorf("command %s = %#v, want a string: %s", k, raw[k], data)
		}
	}
	for _, k := range []string{"id", "version", "request_id", "exec_id", "shell", "script", "run_as"} {
		str(k)
	}
	if _, ok := raw["timeout_secs"].(float64); !ok {
		t.Errorf("timeout_secs = %#v, want a number", raw["timeout_secs"])
	}
	if j, ok := raw["jitter_secs"]; !ok {
		t.Errorf("jitter_secs missing (null when unset)")
	} else if _, isNum := j.(float64); j != nil && !isNum {
		t.Errorf("jitter_secs = %#v, want a number or null", j)
	}
	if st, ok := raw["staleness"].(map[string]any); !ok || st["mode"] == nil {
		t.Errorf("staleness = %#v, want {\"mode\":…}", raw["staleness"])
	}
	allowed := map[string]bool{"id": true, "version": true, "request_id": true, "exec_id": true, "shell": true,
		"script": true, "timeout_secs": true, "jitter_secs": true, "run_as": true, "staleness": true, "cwd": true,
		"deadline_at": true, "script_object": true, "script_object_sha256": true, "retry": true}
	for k := range raw {
		if !allowed[k] {
			t.Errorf("command has key %q outside the contract", k)
		}
	}
	if d, ok := raw["deadline_at"].(string); ok {
		if _, err := time.Parse(time.RFC3339Nano, d); err != nil {
			t.Errorf("deadline_at %q is not RFC 3339", d)
		}
	}
	var c wire.Command
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// logCapture is a slog handler that keeps the records it is given, so a
// test can wait for what the code reports to operators.
type logCapture struct {
	mu      sync.Mutex
	records []capturedRecord
	added   chan struct{}
}

type capturedRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func newLogCapture() *logCapture { return &logCapture{added: make(chan struct{}, 1)} }

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCapture) WithAttrs(as []slog.Attr) slog.Handler {
	return &logWith{c: c, attrs: as}
}
func (c *logCapture) WithGroup(string) slog.Handler { return c }
func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	return c.add(r, nil)
}

func (c *logCapture) add(r slog.Record, pre []slog.Attr) error {
	rec := capturedRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range pre {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	c.mu.Lock()
	c.records = append(c.records, rec)
	c.mu.Unlock()
	select {
	case c.added <- struct{}{}:
	default:
	}
	return nil
}

// logWith carries the attributes of a Logger.With.
type logWith struct {
	c     *logCapture
	attrs []slog.Attr
}

func (w *logWith) Enabled(context.Context, slog.Level) bool { return true }
func (w *logWith) WithAttrs(as []slog.Attr) slog.Handler {
	return &logWith{c: w.c, attrs: append(slices.Clone(w.attrs), as...)}
}
func (w *logWith) WithGroup(string) slog.Handler { return w }
func (w *logWith) Handle(_ context.Context, r slog.Record) error {
	return w.c.add(r, w.attrs)
}

// matching returns the records at level with msg containing text whose
// attributes include want.
func (c *logCapture) matching(level slog.Level, text string, want map[string]string) []capturedRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []capturedRecord
next:
	for _, r := range c.records {
		if r.level != level || !strings.Contains(r.msg, text) {
			continue
		}
		for k, v := range want {
			if r.attrs[k] != v {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}

// wait waits until a record matches.
func (c *logCapture) wait(t *testing.T, level slog.Level, text string, want map[string]string) capturedRecord {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		if m := c.matching(level, text, want); len(m) > 0 {
			return m[0]
		}
		select {
		case <-c.added:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no %v log %q with %v", level, text, want)
		}
	}
}

// startLogged is startScheduler with its log captured.
func startLogged(t *testing.T, n *nodetest.Node, clock Clock) (*Scheduler, *logCapture) {
	t.Helper()
	logs := newLogCapture()
	s, err := Start(context.Background(), Options{
		Conn: n.Conn(t), DB: n.DB, NodeName: "logged", Logger: slog.New(logs), Clock: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s, logs
}

// inGroup puts pc in group in KV agent_groups, as the groups API does.
func inGroup(t *testing.T, js jetstream.JetStream, pc, group string) {
	t.Helper()
	kv, err := js.KeyValue(context.Background(), wire.BucketAgentGroups)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), pc, []byte(`{"groups":["`+group+`"]}`)); err != nil {
		t.Fatal(err)
	}
}
