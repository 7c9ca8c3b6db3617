package scheduler

import (
	"strings"
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// ticks lists the ticks of expr in tz from from (exclusive) to to (inclusive).
func ticks(t *testing.T, expr, tz string, from, to time.Time) []time.Time {
	t.Helper()
	s, err := ParseCron(expr, tz)
	if err != nil {
		t.Fatalf("ParseCron(%q, %q): %v", expr, tz, err)
	}
	var out []time.Time
	for n := s.Next(from); !n.IsZero() && !n.After(to); n = s.Next(n) {
		out = append(out, n)
		if len(out) > 10000 {
			t.Fatal("runaway")
		}
	}
	return out
}

func fmtTimes(ts []time.Time, loc *time.Location) string {
	var b []string
	for _, t := range ts {
		b = append(b, t.In(loc).Format("2006-01-02T15:04:05Z07:00"))
	}
	return strings.Join(b, " ")
}

func TestCronForms(t *testing.T) {
	from := mustTime(t, "2026-05-16T10:17:30Z")
	cases := []struct {
		expr string
		want []string
	}{
		// upstream's six fields, seconds first
		{"0 0 * * * *", []string{"2026-05-16T11:00:00Z", "2026-05-16T12:00:00Z"}},
		{"*/20 * * * * *", []string{"2026-05-16T10:17:40Z", "2026-05-16T10:18:00Z"}},
		{"30 15 10 * * *", []string{"2026-05-17T10:15:30Z", "2026-05-18T10:15:30Z"}},
		// standard five fields: seconds = 0
		{"*/15 * * * *", []string{"2026-05-16T10:30:00Z", "2026-05-16T10:45:00Z"}},
		{"0 9 * * MON-FRI", []string{"2026-05-18T09:00:00Z", "2026-05-19T09:00:00Z"}},
		// descriptors
		{"@hourly", []string{"2026-05-16T11:00:00Z", "2026-05-16T12:00:00Z"}},
		{"@daily", []string{"2026-05-17T00:00:00Z", "2026-05-18T00:00:00Z"}},
		{"@every 10m", []string{"2026-05-16T10:20:00Z", "2026-05-16T10:30:00Z"}},
		{"@every 1h30m", []string{"2026-05-16T10:30:00Z", "2026-05-16T12:00:00Z"}},
	}
	for _, c := range cases {
		s, err := ParseCron(c.expr, "")
		if err != nil {
			t.Errorf("%q: %v", c.expr, err)
			continue
		}
		n1 := s.Next(from)
		n2 := s.Next(n1)
		got := []string{n1.Format(time.RFC3339), n2.Format(time.RFC3339)}
		if got[0] != c.want[0] || got[1] != c.want[1] {
			t.Errorf("%q: next %v, want %v", c.expr, got, c.want)
		}
		if p := s.Prev(n2.Add(-time.Nanosecond)); !p.Equal(n1) {
			t.Errorf("%q: Prev(just before %v) = %v, want %v", c.expr, n2, p, n1)
		}
		if p := s.Prev(n1); !p.Equal(n1) {
			t.Errorf("%q: Prev(%v) = %v, want the tick itself", c.expr, n1, p)
		}
	}
}

// @every ticks on multiples since the epoch, so every node computes the
// same ticks whenever it started.
func TestCronEveryIsAnchored(t *testing.T) {
	s, err := ParseCron("@every 7s", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, from := range []time.Time{mustTime(t, "2026-05-16T10:17:30Z"), mustTime(t, "2026-05-16T10:17:31Z").Add(123 * time.Millisecond)} {
		n := s.Next(from)
		if n.Unix()%7 != 0 || !n.After(from) || n.Sub(from) > 7*time.Second {
			t.Errorf("Next(%v) = %v: not the next multiple of 7s", from, n)
		}
	}
}

func TestCronInvalid(t *testing.T) {
	cases := map[string]string{
		"":                      "cron is required",
		"* * *":                 "expected 5 to 6 fields",
		"61 * * * * *":          "above maximum",
		"0 0 0 30 2 *":          "never fires",
		"@fortnightly":          "unrecognized descriptor",
		"@every 500ms":          "at least 1s",
		"TZ=Asia/Tokyo 0 9 * *": "tz field",
		"0 0 * * * * * *":       "expected 5 to 6 fields",
	}
	for expr, want := range cases {
		_, err := ParseCron(expr, "")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCron(%q) = %v, want an error containing %q", expr, err, want)
		}
	}
	if _, err := ParseCron("@hourly", "Mars/Olympus"); err == nil || !strings.Contains(err.Error(), "IANA") {
		t.Errorf("bad tz: %v", err)
	}
}

func TestCronTimeZone(t *testing.T) {
	// 09:00 in Tokyo is 00:00 UTC; from is exclusive, to inclusive.
	got := ticks(t, "0 0 9 * * *", "Asia/Tokyo", mustTime(t, "2026-05-16T00:00:00Z"), mustTime(t, "2026-05-18T00:00:00Z"))
	if s := fmtTimes(got, time.UTC); s != "2026-05-17T00:00:00Z 2026-05-18T00:00:00Z" {
		t.Errorf("Tokyo 09:00: %s", s)
	}
}

// A daily 09:00 in Europe/Berlin fires once per day, at 09:00 local, across
// both DST transitions of 2026 (March 29 and October 25).
func TestCronDSTDaily(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	for _, win := range [][2]string{{"2026-03-26T00:00:00Z", "2026-04-02T00:00:00Z"}, {"2026-10-22T00:00:00Z", "2026-10-29T00:00:00Z"}} {
		got := ticks(t, "0 0 9 * * *", "Europe/Berlin", mustTime(t, win[0]), mustTime(t, win[1]))
		if len(got) != 7 {
			t.Fatalf("window %v: %d fires: %s", win, len(got), fmtTimes(got, berlin))
		}
		days := map[string]bool{}
		for _, g := range got {
			l := g.In(berlin)
			if l.Hour() != 9 || l.Minute() != 0 || l.Second() != 0 {
				t.Errorf("fire at %v, want 09:00 local", l)
			}
			days[l.Format("2006-01-02")] = true
		}
		if len(days) != 7 {
			t.Errorf("window %v: fires on %d distinct days: %s", win, len(days), fmtTimes(got, berlin))
		}
	}
}

// Wall times inside the transitions: 02:30 does not exist on March 29 (it
// fires once, when the clock jumps to 03:00) and happens twice on October
// 25 (it fires once, the first time). A wildcard-hour expression keeps its
// absolute pace instead.
func TestCronDSTTransitionHour(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	spring := ticks(t, "0 30 2 * * *", "Europe/Berlin", mustTime(t, "2026-03-28T00:00:00Z"), mustTime(t, "2026-03-31T00:00:00Z"))
	if s := fmtTimes(spring, berlin); s != "2026-03-28T02:30:00+01:00 2026-03-29T03:00:00+02:00 2026-03-30T02:30:00+02:00" {
		t.Errorf("spring 02:30: %s", s)
	}
	// Two wall times in the gap collapse into one fire.
	gap := ticks(t, "0 0,30 2 * * *", "Europe/Berlin", mustTime(t, "2026-03-28T23:00:00Z"), mustTime(t, "2026-03-29T12:00:00Z"))
	if s := fmtTimes(gap, berlin); s != "2026-03-29T03:00:00+02:00" {
		t.Errorf("spring 02:00,02:30: %s", s)
	}
	autumn := ticks(t, "0 30 2 * * *", "Europe/Berlin", mustTime(t, "2026-10-24T00:00:00Z"), mustTime(t, "2026-10-27T00:00:00Z"))
	if s := fmtTimes(autumn, berlin); s != "2026-10-24T02:30:00+02:00 2026-10-25T02:30:00+02:00 2026-10-26T02:30:00+01:00" {
		t.Errorf("autumn 02:30: %s", s)
	}
	// Hourly at :30 through the repeated hour: every absolute hour.
	hourly := ticks(t, "0 30 * * * *", "Europe/Berlin", mustTime(t, "2026-10-24T23:00:00Z"), mustTime(t, "2026-10-25T03:00:00Z"))
	if len(hourly) != 4 {
		t.Errorf("hourly through the repeated hour: %s", fmtTimes(hourly, berlin))
	}
	for i := 1; i < len(hourly); i++ {
		if d := hourly[i].Sub(hourly[i-1]); d != time.Hour {
			t.Errorf("hourly gap %v between %v and %v", d, hourly[i-1], hourly[i])
		}
	}
}

func TestHumanDuration(t *testing.T) {
	ok := map[string]time.Duration{
		"30s": 30 * time.Second, "5m": 5 * time.Minute, "1h30m": 90 * time.Minute,
		"1h 30m": 90 * time.Minute, "2days": 48 * time.Hour, "300": 300 * time.Second,
		"1min 5sec": 65 * time.Second, "250ms": 250 * time.Millisecond,
	}
	for in, want := range ok {
		got, err := ParseHumanDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseHumanDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "m5", "5 parsecs", "-5s", "1.5h", "99999999999999999999s"} {
		if d, err := ParseHumanDuration(in); err == nil {
			t.Errorf("ParseHumanDuration(%q) = %v, want an error", in, d)
		}
	}
}
