package scheduler

import (
	"strings"
	"testing"
	"time"
)

func calFires(t *testing.T, at string, days []string, loc *time.Location, from time.Time, n int) []time.Time {
	t.Helper()
	cs, err := parseCalendar(Calendar{At: at, Days: days}, loc)
	if err != nil {
		t.Fatalf("%s %v: %v", at, days, err)
	}
	var out []time.Time
	for x := from; len(out) < n; {
		x = cs.Next(x)
		if x.IsZero() {
			break
		}
		out = append(out, x)
	}
	// Prev walks the same fires backwards.
	for i := len(out) - 1; i > 0; i-- {
		if p := cs.Prev(out[i].Add(-time.Second)); !p.Equal(out[i-1]) {
			t.Errorf("%s %v: Prev before %v = %v, want %v", at, days, out[i], p, out[i-1])
		}
	}
	return out
}

func dates(ts []time.Time, loc *time.Location) string {
	var s []string
	for _, x := range ts {
		s = append(s, x.In(loc).Format("2006-01-02 15:04 Mon"))
	}
	return strings.Join(s, ", ")
}

// Upstream's verified dates and the day grammar: names, ranges, 0-7, nth
// and last weekdays, one-shots.
func TestCalendarDays(t *testing.T) {
	jun1 := mustTime(t, "2026-06-01T00:00:00Z")
	cases := []struct {
		at   string
		days []string
		n    int
		want string
	}{
		{"09:00", []string{"tue#2"}, 2, "2026-06-09 09:00 Tue, 2026-07-14 09:00 Tue"},
		{"22:00", []string{"friL"}, 2, "2026-06-26 22:00 Fri, 2026-07-31 22:00 Fri"},
		{"09:00", []string{"mon-fri"}, 6, "2026-06-01 09:00 Mon, 2026-06-02 09:00 Tue, 2026-06-03 09:00 Wed, 2026-06-04 09:00 Thu, 2026-06-05 09:00 Fri, 2026-06-08 09:00 Mon"},
		{"09:00", []string{"0", "7"}, 2, "2026-06-07 09:00 Sun, 2026-06-14 09:00 Sun"},
		{"09:00", []string{"5-7"}, 3, "2026-06-05 09:00 Fri, 2026-06-06 09:00 Sat, 2026-06-07 09:00 Sun"},
		{"09:00", []string{"SAT-mon"}, 3, "2026-06-01 09:00 Mon, 2026-06-06 09:00 Sat, 2026-06-07 09:00 Sun"},
		{"18:30", nil, 2, "2026-06-01 18:30 Mon, 2026-06-02 18:30 Tue"},
		{"07:05", []string{"*"}, 1, "2026-06-01 07:05 Mon"},
		{"03:00", []string{"mon#1", "0L"}, 4, "2026-06-01 03:00 Mon, 2026-06-28 03:00 Sun, 2026-07-06 03:00 Mon, 2026-07-26 03:00 Sun"},
		{"03:00", []string{"fri#5"}, 2, "2026-07-31 03:00 Fri, 2026-10-30 03:00 Fri"},
		{"2026-06-10 09:00", nil, 5, "2026-06-10 09:00 Wed"},
		{"2026/06/10 09:00", nil, 1, "2026-06-10 09:00 Wed"},
		{"2026-06-10T09:00", nil, 1, "2026-06-10 09:00 Wed"},
		{"2025-06-10 09:00", nil, 1, ""}, // a past one-shot never fires
	}
	for _, c := range cases {
		got := dates(calFires(t, c.at, c.days, time.UTC, jun1, c.n), time.UTC)
		if got != c.want {
			t.Errorf("%s %v:\n got %s\nwant %s", c.at, c.days, got, c.want)
		}
	}
	// Every tue#2 and friL over a year: exactly one per month.
	for _, d := range []string{"tue#2", "friL"} {
		fires := calFires(t, "09:00", []string{d}, time.UTC, mustTime(t, "2026-01-01T00:00:00Z"), 12)
		for i, f := range fires {
			if f.Month() != time.Month(i+1) {
				t.Errorf("%s fire %d in %v", d, i, f)
			}
			if d == "friL" && (f.Weekday() != time.Friday || f.AddDate(0, 0, 7).Month() == f.Month()) {
				t.Errorf("friL fired %v", f)
			}
			if d == "tue#2" && (f.Weekday() != time.Tuesday || f.Day() < 8 || f.Day() > 14) {
				t.Errorf("tue#2 fired %v", f)
			}
		}
	}
}

// The DST rule of the cron engine, on a calendar: a wall time in the
// spring gap fires once when the clock jumps, one in the autumn fold once,
// at its first occurrence.
func TestCalendarDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	spring := calFires(t, "02:30", nil, berlin, mustTime(t, "2026-03-28T12:00:00Z"), 3)
	if got := dates(spring, time.UTC); got != "2026-03-29 01:00 Sun, 2026-03-30 00:30 Mon, 2026-03-31 00:30 Tue" {
		t.Errorf("spring: %s", got)
	}
	if !spring[0].Equal(mustTime(t, "2026-03-29T01:00:00Z")) {
		t.Errorf("02:30 in the gap fired at %v, want the jump at 01:00Z", spring[0])
	}
	autumn := calFires(t, "02:30", nil, berlin, mustTime(t, "2026-10-24T12:00:00Z"), 3)
	if got := dates(autumn, time.UTC); got != "2026-10-25 00:30 Sun, 2026-10-26 01:30 Mon, 2026-10-27 01:30 Tue" {
		t.Errorf("autumn: %s", got)
	}
	// A date bound at a midnight in a gap is an error; fold takes the
	// earlier instant.
	if _, err := parseBound("2026-03-29", berlin); err != nil {
		t.Errorf("midnight exists on 2026-03-29 in Berlin: %v", err)
	}
	santiago, err := time.LoadLocation("America/Santiago")
	if err == nil {
		if _, err := parseBound("2026-09-06", santiago); err == nil || !strings.Contains(err.Error(), "DST gap") {
			t.Errorf("Santiago's missing midnight: %v", err)
		}
	}
}

func TestGatesWindowSkipActive(t *testing.T) {
	s := Schedule{TZ: "utc", Active: &Active{From: "2026-06-01", Until: "2026-06-03T12:00:00+02:00"},
		Constraints: &Constraints{Window: "22:00-05:00", SkipDates: []string{"2026-06-02"}}}
	g := compileGates(s, time.UTC)
	for at, want := range map[string]string{
		"2026-05-31T23:00:00Z": "outside active",
		"2026-06-01T23:00:00Z": "",
		"2026-06-01T04:59:00Z": "",
		"2026-06-01T05:00:00Z": "excluded by constraints (skip_dates or window)",
		"2026-06-01T12:00:00Z": "excluded by constraints (skip_dates or window)",
		"2026-06-02T23:00:00Z": "excluded by constraints (skip_dates or window)", // skip date
		"2026-06-03T04:00:00Z": "",
		"2026-06-03T09:59:00Z": "excluded by constraints (skip_dates or window)",
		"2026-06-03T10:00:00Z": "outside active",
	} {
		got := g.blocked(mustTime(t, at))
		if got != want {
			t.Errorf("%s: %q, want %q", at, got, want)
		}
	}
	// Corrupt values: a window blocks, an active bound is ignored.
	g = compileGates(Schedule{Active: &Active{From: "soon"}, Constraints: &Constraints{Window: "x"}}, time.UTC)
	if g.blocked(mustTime(t, "2026-06-01T00:00:00Z")) == "" || !g.active(mustTime(t, "2000-01-01T00:00:00Z")) {
		t.Error("corrupt gates: window should block, active should be open")
	}
}

func TestFreezeValue(t *testing.T) {
	now := mustTime(t, "2026-12-20T10:00:00Z")
	for v, want := range map[string]bool{
		`{"tz":"utc"}`: true,
		`{"until":"2027-01-05","reason":"year-end change freeze","tz":"utc"}`:  true,
		`{"until":"2026-12-01","tz":"utc"}`:                                    false,
		`{"from":"2026-12-21","tz":"utc"}`:                                     false,
		`{"from":"2026-12-19T00:00:00+09:00","until":"2026-12-21","tz":"utc"}`: true,
		`{"until":"someday","tz":"utc"}`:                                       true, // fail closed
		`not json`:                                                             true,
		`{"tz":"UTC"}`:                                                         true,
	} {
		if got, _ := frozenAt([]byte(v), now); got != want {
			t.Errorf("%s: frozen %v, want %v", v, got, want)
		}
	}
}
