package scheduler

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// cronParser accepts upstream's six fields with seconds, the standard five
// fields (seconds = 0) and descriptors (@hourly, @every 10m). Expressions
// reach it through normalizeCron, which maps what upstream's croner accepts
// beyond robfig's syntax, or rejects it by name.
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
	// bothDays: day of month and day of week are both restricted, and a
	// tick must match both (see specNext).
	bothDays bool
}

// starBit is robfig's mark of a field written as * or ?.
const starBit = 1 << 63

// ParseCron compiles expr for the time zone tz: an IANA name, utc or local
// ("" = UTC; see loadTZ).
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
	norm, err := normalizeCron(expr)
	if err != nil {
		return nil, fmt.Errorf("invalid cron %q: %v", expr, err)
	}
	parsed, err := cronParser.Parse(norm)
	if err != nil {
		return nil, fmt.Errorf("invalid cron %q: %v", expr, err)
	}
	s := &Spec{expr: expr, loc: loc}
	switch p := parsed.(type) {
	case *cron.SpecSchedule:
		s.spec = p
		s.wall = p.Hour&starBit == 0
		s.bothDays = p.Dom&starBit == 0 && p.Dow&starBit == 0
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

// loadTZ resolves a schedule's tz: an IANA name, or one of upstream's
// values utc and local (any case). local is the zone of the node that
// computes the ticks (time.Local, from TZ or /etc/localtime): the nodes of
// a cluster must then share it, or they disagree on the ticks.
func loadTZ(tz string) (*time.Location, error) {
	switch {
	case tz == "" || strings.EqualFold(tz, "UTC"):
		return time.UTC, nil
	case strings.EqualFold(tz, "local"):
		return time.Local, nil
	}
	if loc, ok := zones.Load(tz); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("invalid tz %q: want an IANA time zone name (Europe/Berlin), utc or local", tz)
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
		n := s.specNext(t.In(s.loc))
		if n.IsZero() {
			return n
		}
		return n.UTC()
	}
	w := wallAsUTC(t.In(s.loc))
	for range 10000 {
		nw := s.specNext(w)
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

// specNext is robfig's Next with upstream's day rule. Upstream (croner,
// with_dom_and_dow) fires only on days that match both the day of month and
// the day of week; robfig follows Vixie cron, where a day matching either
// field fires when both are restricted, so "0 0 3 1-7 * SUN" would fire on
// every day 1-7 and every Sunday instead of on the first Sunday. When one
// field is * or ?, robfig already requires both; otherwise the days robfig
// finds are filtered here, skipping the rest of a day that does not match.
func (s *Spec) specNext(t time.Time) time.Time {
	if !s.bothDays {
		return s.spec.Next(t)
	}
	limit := t.AddDate(5, 0, 0)
	for {
		n := s.spec.Next(t)
		if n.IsZero() || n.After(limit) {
			return time.Time{}
		}
		if s.spec.Dom&(1<<uint(n.Day())) != 0 && s.spec.Dow&(1<<uint(n.Weekday())) != 0 {
			return n
		}
		// Go on from the day's last second. Where DST repeats the hour
		// before midnight that second may lie before n: go on from n.
		y, m, d := n.Date()
		t = time.Date(y, m, d+1, 0, 0, 0, 0, n.Location()).Add(-time.Second)
		if !t.After(n) {
			t = n
		}
	}
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

// normalizeCron rewrites what upstream's croner accepts and robfig spells
// differently, and rejects by name what robfig cannot express, rather than
// letting robfig's parse error speak of a feature it has never heard of.
// Day of week 7 is Sunday, as in croner (7, 1-7, 5-7, lists, steps):
// robfig's day of week stops at 6, so an item that reaches 7 becomes the
// list of its days with 7 written 0. Descriptors pass unchanged.
func normalizeCron(expr string) (string, error) {
	if strings.HasPrefix(expr, "@") {
		return expr, nil
	}
	fields := strings.Fields(expr)
	switch {
	case len(fields) == 7:
		return "", fmt.Errorf("a seventh (year) field is not supported: use 5 fields, or 6 with seconds first")
	case len(fields) != 5 && len(fields) != 6:
		return expr, nil // robfig names the count it expects
	}
	dom, dow := len(fields)-3, len(fields)-1
	switch d := strings.ToUpper(fields[dom]); {
	case strings.Contains(d, "L"):
		return "", fmt.Errorf("L (last day of the month) in the day-of-month field is not supported")
	case strings.Contains(d, "W"):
		return "", fmt.Errorf("W (nearest weekday) in the day-of-month field is not supported")
	case strings.Contains(d, "#"):
		return "", fmt.Errorf("# (nth weekday of the month) is not supported")
	}
	// No day name contains an L, so an L here is the "last" modifier.
	switch d := strings.ToUpper(fields[dow]); {
	case strings.Contains(d, "#"):
		return "", fmt.Errorf("# (nth weekday of the month, as in 5#3) is not supported")
	case strings.Contains(d, "L"):
		return "", fmt.Errorf("L (last weekday of the month, as in 5L) is not supported")
	}
	items := strings.Split(fields[dow], ",")
	for i, it := range items {
		items[i] = sundaySeven(it)
	}
	fields[dow] = strings.Join(items, ",")
	return strings.Join(fields, " "), nil
}

var dowNames = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

// sundaySeven spells one day-of-week item that names day 7 as the list of
// its days, 7 as 0; any other item is returned unchanged, malformed ones
// included, for robfig to judge.
func sundaySeven(item string) string {
	rng, stepText, stepped := strings.Cut(item, "/")
	step := 1
	if stepped {
		n, err := strconv.Atoi(stepText)
		if err != nil || n <= 0 {
			return item
		}
		step = n
	}
	day := func(s string) (int, bool) {
		if n, ok := dowNames[strings.ToLower(s)]; ok {
			return n, true
		}
		n, err := strconv.Atoi(s)
		return n, err == nil && n >= 0 && n <= 7
	}
	lo, hi, isRange := strings.Cut(rng, "-")
	start, ok := day(lo)
	if !ok {
		return item // *, ? or something robfig will refuse
	}
	end := start // "N/step" too: only N=7 is ours to rewrite
	if isRange {
		if end, ok = day(hi); !ok {
			return item
		}
	}
	if end != 7 || start > end {
		return item
	}
	var days []string
	for d := start; d <= end; d += step {
		days = append(days, strconv.Itoa(d%7))
	}
	return strings.Join(days, ",")
}
