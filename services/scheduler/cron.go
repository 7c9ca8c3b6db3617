package scheduler

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// cronParser accepts upstream's six fields with seconds, the standard five
// fields (seconds = 0) and descriptors (@hourly, @every 10m).
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Spec is a compiled cron expression in a time zone. Next is deterministic:
// every node computes the same ticks, which is what lets them agree on which
// tick they are claiming.
type Spec struct {
	expr  string
	loc   *time.Location
	spec  *cron.SpecSchedule
	every time.Duration // @every: ticks on multiples of it since the Unix epoch
	// wall: the hour field is fixed, so the expression names wall-clock
	// times, evaluated on the local wall clock (see Next for DST).
	wall bool
}

// ParseCron compiles expr for the IANA time zone tz ("" = UTC).
func ParseCron(expr, tz string) (*Spec, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, fmt.Errorf("cron is required")
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, fmt.Errorf("invalid cron %q: put the time zone in the tz field", expr)
	}
	loc, err := loadTZ(tz)
	if err != nil {
		return nil, err
	}
	if rest, ok := strings.CutPrefix(expr, "@every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil {
			d, err = ParseHumanDuration(rest)
		}
		if err != nil {
			return nil, fmt.Errorf("invalid cron %q: %v", expr, err)
		}
		if d < time.Second || d%time.Second != 0 {
			return nil, fmt.Errorf("invalid cron %q: @every needs whole seconds, at least 1s", expr)
		}
		return &Spec{expr: expr, loc: loc, every: d}, nil
	}
	parsed, err := cronParser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("invalid cron %q: %v", expr, err)
	}
	s := &Spec{expr: expr, loc: loc}
	switch p := parsed.(type) {
	case *cron.SpecSchedule:
		s.spec = p
		s.wall = p.Hour&(1<<63) == 0
	default:
		return nil, fmt.Errorf("invalid cron %q: unsupported form", expr)
	}
	// An expression like "0 0 0 30 2 *" parses but never fires.
	if s.Next(time.Now()).IsZero() {
		return nil, fmt.Errorf("invalid cron %q: it never fires", expr)
	}
	return s, nil
}

// zones caches loaded time zones: time.LoadLocation reads and parses the
// zone file on every call, and thousands of schedules share a few zones.
var zones sync.Map // name -> *time.Location

func loadTZ(tz string) (*time.Location, error) {
	if tz == "" || tz == "UTC" {
		return time.UTC, nil
	}
	if tz == "Local" {
		return nil, fmt.Errorf("invalid tz %q: name an IANA time zone", tz)
	}
	if loc, ok := zones.Load(tz); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("invalid tz %q: not an IANA time zone name", tz)
	}
	zones.Store(tz, loc)
	return loc, nil
}

// Location is the spec's time zone.
func (s *Spec) Location() *time.Location { return s.loc }

// Next is the first tick strictly after t, in UTC; the zero time if none
// within five years.
//
// Expressions with a fixed hour name wall-clock times: they are evaluated on
// the zone's wall clock, a wall time that occurs twice (DST ends) fires once,
// at its first occurrence, and a wall time that does not exist (DST starts)
// fires once, at the moment the clock jumps. So a daily 09:00 fires once a
// day whatever the offset, and a daily 02:30 is neither lost nor doubled.
// Expressions with a wildcard hour ("every 15 minutes") follow absolute time:
// they keep their pace through a repeated or skipped hour.
func (s *Spec) Next(t time.Time) time.Time {
	switch {
	case s.every > 0:
		d := int64(s.every / time.Second)
		u := t.Unix()
		if t.Nanosecond() == 0 && u%d == 0 {
			return time.Unix(u+d, 0).UTC()
		}
		return time.Unix(floorDiv(u, d)*d+d, 0).UTC()
	case !s.wall:
		n := s.spec.Next(t.In(s.loc))
		if n.IsZero() {
			return n
		}
		return n.UTC()
	}
	w := wallAsUTC(t.In(s.loc))
	for range 10000 {
		nw := s.spec.Next(w)
		if nw.IsZero() {
			return nw
		}
		if r := resolveWall(nw, s.loc); r.After(t) {
			return r.UTC()
		}
		w = nw
	}
	return time.Time{}
}

// Prev is the last tick at or before t; the zero time if none within a year.
func (s *Spec) Prev(t time.Time) time.Time {
	if s.every > 0 {
		d := int64(s.every / time.Second)
		return time.Unix(floorDiv(t.Unix(), d)*d, 0).UTC()
	}
	// Gallop back until a tick falls in (t-step, t], then walk forward to
	// the last one: O(log distance) Next calls.
	for step := time.Second; step <= 400*24*time.Hour; step *= 2 {
		from := t.Add(-step)
		n := s.Next(from)
		if n.IsZero() || n.After(t) {
			continue
		}
		for {
			m := s.Next(n)
			if m.IsZero() || m.After(t) {
				return n
			}
			n = m
		}
	}
	return time.Time{}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// wallAsUTC is t's wall clock read as if it were UTC: arithmetic on it has
// no DST.
func wallAsUTC(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, sec := t.Clock()
	return time.Date(y, mo, d, h, mi, sec, t.Nanosecond(), time.UTC)
}

// resolveWall maps a wall time (given as UTC fields) to the instant it names
// in loc: its first occurrence, or the end of the gap it falls in.
func resolveWall(w time.Time, loc *time.Location) time.Time {
	var best time.Time
	var earliest time.Time
	for _, probe := range []time.Duration{-36 * time.Hour, 0, 36 * time.Hour} {
		_, off := w.Add(probe).In(loc).Zone()
		inst := w.Add(-time.Duration(off) * time.Second)
		if wallAsUTC(inst.In(loc)).Equal(w) {
			if best.IsZero() || inst.Before(best) {
				best = inst
			}
		} else if earliest.IsZero() || inst.Before(earliest) {
			earliest = inst
		}
	}
	if !best.IsZero() {
		return best
	}
	// In a gap: the clock jumps over w at the end of the zone period that
	// holds the earlier reading.
	_, end := earliest.In(loc).ZoneBounds()
	if end.IsZero() {
		return earliest
	}
	return end
}
