package scheduler

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/wire"
)

// daysWhere lists 03:00 UTC of every day in [from, to) that keep accepts.
func daysWhere(from, to time.Time, keep func(time.Time) bool) []time.Time {
	var out []time.Time
	for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
		if keep(d) {
			out = append(out, d.Add(3*time.Hour))
		}
	}
	return out
}

// Upstream (croner with dom_and_dow) fires only on days matching both the
// day of month and the day of week; Vixie cron, robfig's rule, fires on
// either when both are restricted.
func TestCronDayOfMonthAndWeekBothMatch(t *testing.T) {
	from, to := mustTime(t, "2026-01-01T00:00:00Z"), mustTime(t, "2027-01-01T00:00:00Z")
	cases := []struct {
		expr string
		keep func(time.Time) bool
	}{
		{"0 0 3 1-7 * SUN", func(d time.Time) bool { return d.Day() <= 7 && d.Weekday() == time.Sunday }},
		{"0 3 13 * FRI", func(d time.Time) bool { return d.Day() == 13 && d.Weekday() == time.Friday }},
		{"0 0 3 */2 * MON,TUE", func(d time.Time) bool {
			return d.Day()%2 == 1 && (d.Weekday() == time.Monday || d.Weekday() == time.Tuesday)
		}},
		// One field left open: that field does not restrict.
		{"0 0 3 1-7 * *", func(d time.Time) bool { return d.Day() <= 7 }},
		{"0 0 3 ? * SUN", func(d time.Time) bool { return d.Weekday() == time.Sunday }},
	}
	for _, c := range cases {
		want := daysWhere(from, to, c.keep)
		got := ticks(t, c.expr, "", from.Add(-time.Second), to)
		if fmtTimes(got, time.UTC) != fmtTimes(want, time.UTC) {
			t.Errorf("%q fires %d times:\n%s\nwant %d:\n%s", c.expr, len(got), fmtTimes(got, time.UTC), len(want), fmtTimes(want, time.UTC))
		}
	}
	// The same rule on a zone's wall clock (the wall path of Next), and
	// with a wildcard hour (the absolute path).
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	got := ticks(t, "0 30 9 1-7 * SUN", "Europe/Berlin", from, to)
	if len(got) != 12 {
		t.Errorf("first Sundays 09:30 Berlin: %d fires: %s", len(got), fmtTimes(got, berlin))
	}
	for _, g := range got {
		l := g.In(berlin)
		if l.Day() > 7 || l.Weekday() != time.Sunday || l.Hour() != 9 || l.Minute() != 30 {
			t.Errorf("fire at %v, want a first Sunday 09:30 Berlin", l)
		}
	}
	hourly := ticks(t, "0 0 * 1-7 * SUN", "Europe/Berlin", from, to)
	if len(hourly) != 12*24 {
		t.Errorf("hourly on first Sundays in Berlin: %d fires, want %d (a DST Sunday has 23 or 25 hours, none is a first Sunday in 2026)", len(hourly), 12*24)
	}
	// Prev agrees with Next.
	s, _ := ParseCron("0 0 3 1-7 * SUN", "")
	if p := s.Prev(mustTime(t, "2026-06-06T12:00:00Z")); !p.Equal(mustTime(t, "2026-05-03T03:00:00Z")) {
		t.Errorf("Prev = %v, want the first Sunday of May", p)
	}
	// Both restricted and never both at once within five years.
	if _, err := ParseCron("0 0 0 29 2 MON", ""); err == nil || !strings.Contains(err.Error(), "never fires") {
		t.Errorf("Feb 29 on a Monday: %v", err)
	}
}

// Day of week 7 is Sunday, as croner accepts it.
func TestCronSundaySeven(t *testing.T) {
	from, to := mustTime(t, "2026-05-01T00:00:00Z"), mustTime(t, "2026-07-01T00:00:00Z")
	same := map[string]string{
		"0 0 3 * * 7":     "0 0 3 * * 0",
		"0 0 3 * * 1-7":   "0 0 3 * * *",
		"0 0 3 * * 5-7":   "0 0 3 * * 5,6,0",
		"0 0 3 * * 1,7":   "0 0 3 * * MON,SUN",
		"0 0 3 * * FRI-7": "0 0 3 * * 0,5,6",
		"0 0 3 * * 1-7/2": "0 0 3 * * MON,WED,FRI,SUN",
		"0 0 3 * * 0-7":   "0 0 3 * * *",
		"0 3 * * 7":       "0 3 * * SUN",
		"0 0 3 1-7 * 7":   "0 0 3 1-7 * SUN",
	}
	for expr, eq := range same {
		got := fmtTimes(ticks(t, expr, "", from, to), time.UTC)
		want := fmtTimes(ticks(t, eq, "", from, to), time.UTC)
		if got != want || got == "" {
			t.Errorf("%q fires\n%s\nwant as %q\n%s", expr, got, eq, want)
		}
	}
	for _, bad := range []string{"0 0 3 * * 8", "0 0 3 * * 6-8", "0 0 3 * * 7-1"} {
		if _, err := ParseCron(bad, ""); err == nil {
			t.Errorf("ParseCron(%q) accepted", bad)
		}
	}
}

// What croner accepts and robfig cannot express is refused by name.
func TestCronUpstreamOnlySyntax(t *testing.T) {
	cases := map[string]string{
		"0 0 0 L * *":         "L (last day of the month)",
		"0 0 0 LW * *":        "L (last day of the month)",
		"0 0 0 15W * *":       "W (nearest weekday)",
		"0 0 0 * * 5#3":       "# (nth weekday",
		"0 0 0 * * FRI#1":     "# (nth weekday",
		"0 0 0 * * 5L":        "L (last weekday",
		"0 0 0 1 1 * 2027":    "seventh (year) field",
		"0 0 L * *":           "L (last day of the month)",
		"0 0 0 * * WED":       "",
		"0 0 0 * JUL-AUG WED": "",
	}
	for expr, want := range cases {
		_, err := ParseCron(expr, "")
		switch {
		case want == "" && err != nil:
			t.Errorf("ParseCron(%q): %v", expr, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("ParseCron(%q) = %v, want an error naming %q", expr, err, want)
		}
	}
}

// tz takes upstream's enum values utc and local besides IANA names.
func TestCronTZUpstreamValues(t *testing.T) {
	for tz, want := range map[string]*time.Location{"utc": time.UTC, "UTC": time.UTC, "Utc": time.UTC, "": time.UTC, "local": time.Local, "Local": time.Local, "LOCAL": time.Local} {
		s, err := ParseCron("0 0 9 * * *", tz)
		if err != nil {
			t.Errorf("tz %q: %v", tz, err)
			continue
		}
		if s.Location() != want {
			t.Errorf("tz %q: location %v, want %v", tz, s.Location(), want)
		}
	}
	// local: 09:00 on this node's clock.
	from := mustTime(t, "2026-05-16T00:00:00Z")
	for _, g := range ticks(t, "0 0 9 * * *", "local", from, from.AddDate(0, 0, 5)) {
		if l := g.In(time.Local); l.Hour() != 9 || l.Minute() != 0 {
			t.Errorf("tz local: fire at %v local", l)
		}
	}
	if _, err := ParseCron("@hourly", "utc+1"); err == nil {
		t.Error("tz utc+1 accepted")
	}
}

// The API applies the same rules: a PUT names what is unsupported, tz
// takes utc and local, and preview, upcoming and the engine agree on the
// first Sunday.
func TestSchedulesUpstreamCron(t *testing.T) {
	n := nodetest.Start(t)
	t0 := mustTime(t, "2026-06-01T00:00:00Z") // a Monday, day 1
	clock := newFakeClock(t0)
	s := startScheduler(t, n, "a", clock)
	waitSynced(t, s)
	nc := n.Conn(t)
	mustCall(t, nc, "kanade.jobs.put", "", echoJob)

	bad := map[string]string{
		`{"id":"s","job_id":"echo","cron":"0 0 0 L * *"}`:      "L (last day of the month) in the day-of-month field is not supported",
		`{"id":"s","job_id":"echo","cron":"0 0 0 * * 1#2"}`:    "# (nth weekday",
		`{"id":"s","job_id":"echo","cron":"0 0 0 15W * *"}`:    "W (nearest weekday)",
		`{"id":"s","job_id":"echo","cron":"0 0 0 1 1 * 2030"}`: "seventh (year) field",
	}
	for body, want := range bad {
		code, msg := call(t, nc, "kanade.schedules.put", "", body)
		if code != 400 || !strings.Contains(msg, want) {
			t.Errorf("put %s: %d %q, want 400 naming %q", body, code, msg, want)
		}
	}
	for _, tz := range []string{"utc", "local", "UTC"} {
		mustCall(t, nc, "kanade.schedules.put", "", `{"id":"tz-`+strings.ToLower(tz)+`","job_id":"echo","cron":"@yearly","tz":"`+tz+`","enabled":false}`)
	}
	out := mustCall(t, nc, "kanade.schedules.get", "", `{"id":"tz-local"}`)
	if !strings.Contains(out, `"tz":"local"`) {
		t.Errorf("tz local stored as %s", out)
	}

	mustCall(t, nc, "kanade.schedules.put", "", `{"id":"first-sunday","job_id":"echo","cron":"0 0 3 1-7 * 7"}`)
	var pv Preview
	json.Unmarshal([]byte(mustCall(t, nc, "kanade.schedules.preview", "", `{"id":"first-sunday","count":3}`)), &pv)
	if strings.Join(pv.Fires, " ") != "2026-06-07T03:00:00Z 2026-07-05T03:00:00Z 2026-08-02T03:00:00Z" {
		t.Errorf("preview: %v", pv.Fires)
	}
	var up []Upcoming
	json.Unmarshal([]byte(mustCall(t, nc, "kanade.schedules.upcoming", "", `{}`)), &up)
	if len(up) != 1 || up[0].ID != "first-sunday" || up[0].NextRun != "2026-06-07T03:00:00Z" {
		t.Errorf("upcoming: %+v", up)
	}
	cmds := subscribeCommands(t, nc, wire.SubjectCommandsAll)
	tick := mustTime(t, "2026-06-07T03:00:00Z")
	clock.waitArmed(t, tick)
	clock.Set(tick)
	c, _ := cmds.next(t)
	wantTick(t, c, "first-sunday", tick)
	clock.waitArmed(t, mustTime(t, "2026-07-05T03:00:00Z"))
}

// A schedule in the bucket that the engine cannot use (written by
// something that did not validate it) is reported: a warning once per
// change, and an "error" in the schedules list.
func TestSchedulesUnusableIsReported(t *testing.T) {
	n := nodetest.Start(t)
	s, logs := startLogged(t, n, nil)
	waitSynced(t, s)
	nc := n.Conn(t)
	mustCall(t, nc, "kanade.jobs.put", "", echoJob)
	mustCall(t, nc, "kanade.schedules.put", "", `{"id":"good","job_id":"echo","cron":"@hourly"}`)
	cat := catalogOf(t, n)
	ctx := context.Background()
	put := func(key, value string) {
		t.Helper()
		if _, err := cat.Schedules.Put(ctx, key, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	put("last-day", `{"id":"last-day","job_id":"echo","cron":"0 0 0 L * *","tz":"UTC","enabled":true}`)
	put("mars", `{"id":"mars","job_id":"echo","cron":"@daily","tz":"Mars/Olympus"}`)
	put("garbage", `not json`)

	var list []map[string]any
	json.Unmarshal([]byte(mustCall(t, nc, "kanade.schedules.list", "", "")), &list)
	errs := map[string]string{}
	for _, s := range list {
		e, _ := s["error"].(string)
		errs[s["id"].(string)] = e
	}
	want := map[string]string{"good": "", "last-day": "L (last day of the month)", "mars": "invalid tz", "garbage": "decode schedule"}
	if len(errs) != len(want) {
		t.Errorf("list: %v", list)
	}
	for id, w := range want {
		got, ok := errs[id]
		if !ok || (w == "") != (got == "") || !strings.Contains(got, w) {
			t.Errorf("list %s error %q, want %q", id, got, w)
		}
	}
	for _, s := range list {
		if s["id"] == "last-day" && (s["cron"] != "0 0 0 L * *" || s["enabled"] != true) {
			t.Errorf("list changed the stored fields: %v", s)
		}
	}
	// The stored schedule itself is unchanged.
	if out := mustCall(t, nc, "kanade.schedules.get", "", `{"id":"last-day"}`); strings.Contains(out, "error") {
		t.Errorf("get: %s", out)
	}

	warn := func(id string) int {
		return len(logs.matching(slog.LevelWarn, "schedule not firing", map[string]string{"schedule": id}))
	}
	r := logs.wait(t, slog.LevelWarn, "schedule not firing", map[string]string{"schedule": "last-day"})
	if !strings.Contains(r.attrs["err"], "L (last day of the month)") {
		t.Errorf("warning %+v does not give the reason", r)
	}
	logs.wait(t, slog.LevelWarn, "schedule not firing", map[string]string{"schedule": "mars"})
	// Another change of it is warned of again; a good one is not.
	put("last-day", `{"id":"last-day","job_id":"echo","cron":"0 0 0 L * *","tz":"UTC","enabled":false}`)
	for deadline := time.Now().Add(10 * time.Second); warn("last-day") < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second change was not warned of")
		}
	}
	if warn("last-day") != 2 || warn("good") != 0 {
		t.Errorf("warnings: last-day %d good %d, want 2 and 0", warn("last-day"), warn("good"))
	}
}
