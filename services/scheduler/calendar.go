package scheduler

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Ticker computes a schedule's ticks: a cron Spec, a calendar, or the
// reconcile poll. Next is strictly after t, Prev at or before t; both zero
// when there is none.
type Ticker interface {
	Next(t time.Time) time.Time
	Prev(t time.Time) time.Time
}

// pollTicker is the reconcile shapes' poll: the start of every minute.
var pollTicker = func() *Spec {
	s, err := ParseCron("0 * * * * *", "utc")
	if err != nil {
		panic(err)
	}
	return s
}()

// calendarSpec is a when.calendar evaluated natively (rather than lowered
// to cron as upstream does) on the zone's wall clock, with the DST rule of
// cron.go: a wall time that occurs twice fires at its first occurrence, one
// that does not exist fires when the clock jumps over it.
type calendarSpec struct {
	loc      *time.Location
	hour     int
	min      int
	oneShot  bool
	date     time.Time // one-shot: the wall date (UTC fields)
	days     uint8     // weekday bits, Sunday = bit 0
	nth      [7]uint8  // per weekday: bits of the ordinals 1..5 (bit k = k-th)
	last     uint8     // weekday bits of "last <weekday> of the month"
	anyDay   bool      // no days, or *
	cronText string    // the lowered cron, for messages
}

const dayTokenWant = "want mon..sun, 0-7, a range like mon-fri, an nth-weekday like tue#2, a last-weekday like friL, or *"

// parseCalendar validates and compiles a calendar in loc, with upstream's
// messages (validation rows 5a-5d).
func parseCalendar(c Calendar, loc *time.Location) (*calendarSpec, error) {
	at := strings.TrimSpace(c.At)
	cs := &calendarSpec{loc: loc}
	bad := fmt.Errorf("when.at: unparseable '%s' (want HH:MM or YYYY-MM-DD HH:MM)", c.At)
	if date, clock, ok := cutDateTime(at); ok {
		d, err := parseDate(date)
		if err != nil {
			return nil, bad
		}
		h, m, err := parseHHMM(clock)
		if err != nil {
			return nil, bad
		}
		if len(c.Days) > 0 {
			return nil, fmt.Errorf("when.at with a date is a one-shot and cannot be combined with days")
		}
		cs.oneShot, cs.date, cs.hour, cs.min = true, d, h, m
		cs.cronText = fmt.Sprintf("0 %d %d %d %d * %d", m, h, d.Day(), int(d.Month()), d.Year())
		return cs, nil
	}
	h, m, err := parseHHMM(at)
	if err != nil {
		return nil, bad
	}
	cs.hour, cs.min = h, m
	dow := "*"
	if len(c.Days) > 0 {
		dow = strings.Join(c.Days, ",")
	}
	cs.cronText = fmt.Sprintf("0 %d %d * * %s", m, h, dow)
	if len(c.Days) == 0 {
		cs.anyDay = true
		return cs, nil
	}
	for _, tok := range c.Days {
		if err := cs.addDay(tok); err != nil {
			return nil, fmt.Errorf("when.days: invalid day token '%s' (%s; %s)", tok, err.Error(), dayTokenWant)
		}
	}
	return cs, nil
}

// cutDateTime splits "2026-06-10 09:00", "2026-06-10T09:00" or
// "2026/06/10 09:00".
func cutDateTime(s string) (date, clock string, ok bool) {
	if i := strings.IndexAny(s, " T"); i > 0 {
		return s[:i], strings.TrimSpace(s[i+1:]), true
	}
	return "", "", false
}

func parseDate(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02", "2006/01/02"} {
		if d, err := time.Parse(layout, s); err == nil {
			return d, nil
		}
	}
	return time.Time{}, fmt.Errorf("bad date %q", s)
}

// parseHHMM reads H:MM or HH:MM.
func parseHHMM(s string) (int, int, error) {
	hs, ms, ok := strings.Cut(s, ":")
	if !ok || len(hs) < 1 || len(hs) > 2 || len(ms) != 2 {
		return 0, 0, fmt.Errorf("input contains invalid characters")
	}
	h, err1 := strconv.Atoi(hs)
	m, err2 := strconv.Atoi(ms)
	if err1 != nil || err2 != nil || hs[0] == '+' || hs[0] == '-' || ms[0] == '+' || ms[0] == '-' {
		return 0, 0, fmt.Errorf("input contains invalid characters")
	}
	if h > 23 || m > 59 {
		return 0, 0, fmt.Errorf("input is out of range")
	}
	return h, m, nil
}

// dayNum reads one weekday: a name (any case) or 0-7, 7 being Sunday.
func dayNum(s string) (int, bool) {
	if n, ok := dowNames[strings.ToLower(s)]; ok {
		return n, true
	}
	if len(s) == 1 && s[0] >= '0' && s[0] <= '7' {
		return int(s[0]-'0') % 7, true
	}
	return 0, false
}

// addDay adds one days token; the error is upstream's reason.
func (cs *calendarSpec) addDay(tok string) error {
	notDay := func(p string) error { return fmt.Errorf("'%s' is not a day", p) }
	if tok == "*" {
		cs.anyDay = true
		return nil
	}
	if tok == "" || strings.ContainsAny(tok, ",/ \t") {
		return notDay(tok)
	}
	if before, ord, ok := strings.Cut(tok, "#"); ok {
		d, isDay := dayNum(before)
		if !isDay {
			return fmt.Errorf("the part before # must be a single weekday")
		}
		n, err := strconv.Atoi(ord)
		if err != nil || n < 1 || n > 5 {
			return fmt.Errorf("the # ordinal must be 1..5 (e.g. tue#2 = 2nd Tuesday)")
		}
		cs.nth[d] |= 1 << n
		return nil
	}
	if strings.HasSuffix(tok, "L") || strings.HasSuffix(tok, "l") {
		before := tok[:len(tok)-1]
		// "sunl"/"mon" etc. never end in l, so a trailing l is the modifier
		if before == "" {
			return fmt.Errorf("`L` (last-weekday) needs a weekday before it, e.g. friL")
		}
		d, isDay := dayNum(before)
		if !isDay {
			return fmt.Errorf("the part before L must be a single weekday (e.g. friL = last Friday)")
		}
		cs.last |= 1 << d
		return nil
	}
	if lo, hi, ok := strings.Cut(tok, "-"); ok {
		if lo == "" || hi == "" {
			return fmt.Errorf("empty range bound")
		}
		a, okA := dayNum(lo)
		if !okA {
			return notDay(lo)
		}
		b, okB := dayNum(hi)
		if !okB {
			return notDay(hi)
		}
		if hi == "7" {
			b = 7
		}
		// A range that wraps (fri-mon) is read as the days it names.
		if b < a {
			b += 7
		}
		for d := a; d <= b; d++ {
			cs.days |= 1 << (d % 7)
		}
		return nil
	}
	d, ok := dayNum(tok)
	if !ok {
		return notDay(tok)
	}
	cs.days |= 1 << d
	return nil
}

// matches reports whether the calendar fires on the wall date d.
func (cs *calendarSpec) matches(d time.Time) bool {
	if cs.anyDay {
		return true
	}
	wd := int(d.Weekday())
	if cs.days&(1<<wd) != 0 {
		return true
	}
	if cs.nth[wd]&(1<<((d.Day()-1)/7+1)) != 0 {
		return true
	}
	if cs.last&(1<<wd) != 0 {
		y, m, _ := d.Date()
		if d.Day()+7 > time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day() {
			return true
		}
	}
	return false
}

// at is the instant the calendar names on wall date d.
func (cs *calendarSpec) at(d time.Time) time.Time {
	y, m, dd := d.Date()
	return resolveWall(time.Date(y, m, dd, cs.hour, cs.min, 0, 0, time.UTC), cs.loc)
}

// Next is the first fire strictly after t (zero if none within 5 years).
func (cs *calendarSpec) Next(t time.Time) time.Time {
	if cs.oneShot {
		if i := cs.at(cs.date); i.After(t) {
			return i.UTC()
		}
		return time.Time{}
	}
	w := wallAsUTC(t.In(cs.loc))
	day := time.Date(w.Year(), w.Month(), w.Day()-1, 0, 0, 0, 0, time.UTC)
	for range 5 * 366 {
		if cs.matches(day) {
			if i := cs.at(day); i.After(t) {
				return i.UTC()
			}
		}
		day = day.AddDate(0, 0, 1)
	}
	return time.Time{}
}

// Prev is the last fire at or before t (zero if none within 5 years).
func (cs *calendarSpec) Prev(t time.Time) time.Time {
	if cs.oneShot {
		if i := cs.at(cs.date); !i.After(t) {
			return i.UTC()
		}
		return time.Time{}
	}
	w := wallAsUTC(t.In(cs.loc))
	day := time.Date(w.Year(), w.Month(), w.Day()+1, 0, 0, 0, 0, time.UTC)
	for range 5 * 366 {
		if cs.matches(day) {
			if i := cs.at(day); !i.After(t) {
				return i.UTC()
			}
		}
		day = day.AddDate(0, 0, -1)
	}
	return time.Time{}
}
