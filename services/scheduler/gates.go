package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
)

// The gates a tick passes before it fires, in upstream's order: the fleet
// freeze, the schedule's active window, then its constraints (skip dates
// and the wall-clock window).

// BucketFleetConfig holds fleet-wide settings; key FreezeKey is the freeze.
const (
	BucketFleetConfig = "fleet_config"
	FreezeKey         = "freeze"
)

// parseBound is upstream's Active::parse_bound: RFC 3339 (its offset
// wins), else YYYY-MM-DD at 00:00 in loc; a midnight in a DST gap is an
// error, a repeated one the earlier instant.
func parseBound(s string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.Parse("2006-01-02", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("unparseable bound '%s' (want YYYY-MM-DD or RFC3339)", s)
	}
	t := resolveWall(d, loc)
	if !wallAsUTC(t.In(loc)).Equal(d) {
		return time.Time{}, fmt.Errorf("bound '%s' falls in a DST gap for the schedule's tz", s)
	}
	return t, nil
}

// window is constraints.window: [start, end) of the wall clock, in
// minutes of the day; start > end crosses midnight.
type window struct{ start, end int }

func parseWindow(s string) (window, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok || strings.Contains(b, "-") {
		return window{}, fmt.Errorf("constraints.window: '%s' must be 'HH:MM-HH:MM'", s)
	}
	var w window
	for i, part := range []string{a, b} {
		p := strings.TrimSpace(part)
		h, m, err := parseHHMM(p)
		if err != nil {
			return window{}, fmt.Errorf("constraints.window: invalid time '%s': %v", p, err)
		}
		if i == 0 {
			w.start = h*60 + m
		} else {
			w.end = h*60 + m
		}
	}
	if w.start == w.end {
		return window{}, fmt.Errorf("constraints.window: start and end are equal ('%s'); omit window for 'always'", s)
	}
	return w, nil
}

func (w window) contains(minute int) bool {
	if w.start < w.end {
		return minute >= w.start && minute < w.end
	}
	return minute >= w.start || minute < w.end
}

// gates is a schedule's compiled active window and constraints.
type gates struct {
	loc         *time.Location
	from, until time.Time // zero = open; an unparseable bound is open (upstream fails open)
	window      *window
	badWindow   bool // a corrupt window blocks (fail closed)
	skip        map[string]bool
	badSkip     bool // a corrupt skip date blocks every day
}

func compileGates(s Schedule, loc *time.Location) gates {
	g := gates{loc: loc}
	if a := s.Active; a != nil {
		if a.From != "" {
			g.from, _ = parseBound(a.From, loc)
		}
		if a.Until != "" {
			g.until, _ = parseBound(a.Until, loc)
		}
	}
	if c := s.Constraints; c != nil {
		if c.Window != "" {
			w, err := parseWindow(c.Window)
			if err != nil {
				g.badWindow = true
			} else {
				g.window = &w
			}
		}
		for _, d := range c.SkipDates {
			if _, err := time.Parse("2006-01-02", d); err != nil {
				g.badSkip = true
			}
			if g.skip == nil {
				g.skip = map[string]bool{}
			}
			g.skip[d] = true
		}
	}
	return g
}

// active is upstream's Active::contains: from <= t < until.
func (g gates) active(t time.Time) bool {
	return (g.from.IsZero() || !t.Before(g.from)) && (g.until.IsZero() || t.Before(g.until))
}

// allows is upstream's Constraints::allows: not a skip date, inside the
// window.
func (g gates) allows(t time.Time) bool {
	w := t.In(g.loc)
	if g.badSkip || g.skip[w.Format("2006-01-02")] {
		return false
	}
	if g.badWindow {
		return false
	}
	if g.window != nil && !g.window.contains(w.Hour()*60+w.Minute()) {
		return false
	}
	return true
}

// blocked says why a fire at t does not happen ("" when it does): the
// schedule's own gates, after the freeze.
func (g gates) blocked(t time.Time) string {
	switch {
	case !g.active(t):
		return "outside active"
	case !g.allows(t):
		return "excluded by constraints (skip_dates or window)"
	}
	return ""
}

// Freeze is the fleet-wide change freeze, KV fleet_config key freeze, as
// upstream stores it: no bounds means frozen until cleared.
type Freeze struct {
	From   string `json:"from,omitempty"`
	Until  string `json:"until,omitempty"`
	Reason string `json:"reason,omitempty"`
	TZ     string `json:"tz"`
}

// validate is PUT /api/freeze's check.
func (f *Freeze) validate() error {
	if f.TZ == "" {
		f.TZ = "local"
	}
	loc, err := whenTZ(f.TZ)
	if err != nil {
		return api.BadRequest("invalid freeze: %v", err)
	}
	var from, until time.Time
	if f.From != "" {
		if from, err = parseBound(f.From, loc); err != nil {
			return api.BadRequest("invalid freeze: from: %v", err)
		}
	}
	if f.Until != "" {
		if until, err = parseBound(f.Until, loc); err != nil {
			return api.BadRequest("invalid freeze: until: %v", err)
		}
	}
	if !from.IsZero() && !until.IsZero() && !from.Before(until) {
		return api.BadRequest("invalid freeze: from (%s) must be strictly before until (%s)", f.From, f.Until)
	}
	return nil
}

// frozenAt reports whether a stored freeze value holds at now; a value or
// bound that does not parse reads as frozen (upstream fails closed).
func frozenAt(value []byte, now time.Time) (bool, string) {
	var f Freeze
	if err := json.Unmarshal(value, &f); err != nil {
		return true, "corrupt freeze value"
	}
	loc, err := whenTZ(f.TZ)
	if err != nil {
		return true, "corrupt freeze tz"
	}
	if f.From != "" {
		from, err := parseBound(f.From, loc)
		if err != nil {
			return true, "corrupt freeze bound"
		}
		if now.Before(from) {
			return false, ""
		}
	}
	if f.Until != "" {
		until, err := parseBound(f.Until, loc)
		if err != nil {
			return true, "corrupt freeze bound"
		}
		if !now.Before(until) {
			return false, ""
		}
	}
	return true, f.Reason
}

// FreezeWatch mirrors fleet_config/freeze for the engine.
type FreezeWatch struct {
	mu    sync.RWMutex
	value []byte // nil = not frozen
}

// WatchFreeze follows the freeze key until ctx ends; wg tracks the
// goroutine. It returns once the current value is read.
func WatchFreeze(ctx context.Context, kv jetstream.KeyValue, wg *sync.WaitGroup, log *slog.Logger) (*FreezeWatch, error) {
	fw := &FreezeWatch{}
	w, err := kv.Watch(ctx, FreezeKey)
	if err != nil {
		return nil, fmt.Errorf("watch %s/%s: %w", BucketFleetConfig, FreezeKey, err)
	}
	ready := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { w.Stop() }()
		once := sync.OnceFunc(func() { close(ready) })
		defer once()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					// Reopened, as upstream's every 5 s: a watcher that
					// stayed closed would keep a frozen fleet frozen, or
					// never see a freeze set later.
					log.Warn("freeze watcher closed; reopening")
					for {
						select {
						case <-ctx.Done():
							return
						case <-time.After(5 * time.Second):
						}
						nw, err := kv.Watch(ctx, FreezeKey)
						if err == nil {
							w = nw
							break
						}
						log.Warn("freeze: reopen watch", "err", err)
					}
					continue
				}
				if e == nil {
					once()
					continue
				}
				fw.mu.Lock()
				if e.Operation() == jetstream.KeyValuePut {
					fw.value = append([]byte(nil), e.Value()...)
				} else {
					fw.value = nil
				}
				fw.mu.Unlock()
			}
		}
	}()
	select {
	case <-ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		return nil, errors.New("freeze: no initial value")
	}
	return fw, nil
}

// Frozen reports whether the fleet is frozen at now, and why.
func (fw *FreezeWatch) Frozen(now time.Time) (bool, string) {
	if fw == nil {
		return false, ""
	}
	fw.mu.RLock()
	v := fw.value
	fw.mu.RUnlock()
	if v == nil {
		return false, ""
	}
	return frozenAt(v, now)
}

// GetFreeze is GET /api/freeze: the stored freeze, or null.
func GetFreeze(ctx context.Context, kv jetstream.KeyValue) (any, error) {
	e, err := kv.Get(ctx, FreezeKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return json.RawMessage("null"), nil
	}
	if err != nil {
		return nil, fmt.Errorf("KV get: %w", err)
	}
	var f Freeze
	if err := json.Unmarshal(e.Value(), &f); err != nil {
		return nil, fmt.Errorf("stored freeze is corrupt: %w", err)
	}
	if f.TZ == "" {
		f.TZ = "local"
	}
	return f, nil
}

// PutFreeze is PUT /api/freeze: {} freezes until cleared.
func PutFreeze(ctx context.Context, kv jetstream.KeyValue, body []byte) (any, error) {
	var f Freeze
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, &f); err != nil {
		return nil, api.BadRequest("invalid freeze: %v", err)
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	b, err := api.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("serialize: %w", err)
	}
	if _, err := kv.Put(ctx, FreezeKey, b); err != nil {
		return nil, fmt.Errorf("KV put: %w", err)
	}
	return json.RawMessage(b), nil
}

// DeleteFreeze is DELETE /api/freeze: thaw, idempotent.
func DeleteFreeze(ctx context.Context, kv jetstream.KeyValue) error {
	if _, err := kv.Get(ctx, FreezeKey); errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err := kv.Delete(ctx, FreezeKey); err != nil {
		return fmt.Errorf("KV delete: %w", err)
	}
	return nil
}
