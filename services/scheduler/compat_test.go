package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
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
	var pv PreviewReply
	json.Unmarshal([]byte(mustCall(t, nc, "kanade.schedules.preview", "", `{"id":"first-sunday","count":3}`)), &pv)
	if strings.Join(pv.Fires, " ") != "2026-06-07T03:00:00+00:00 2026-07-05T03:00:00+00:00 2026-08-02T03:00:00+00:00" {
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
	// Fixed from its list item, it is stored without the derived error.
	for _, s := range list {
		if s["id"] == "mars" {
			s["tz"] = "utc"
			b, _ := json.Marshal(s)
			if out := mustCall(t, nc, "kanade.schedules.put", "", string(b)); strings.Contains(out, "error") {
				t.Errorf("put of a list item stored %s", out)
			}
		}
	}
	if out := mustCall(t, nc, "kanade.schedules.list", "", ""); strings.Count(out, `"error"`) != 2 {
		t.Errorf("list after fixing mars: %s", out)
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
	// A replay of the same revision (what a re-watch does) is not.
	en, err := cat.Schedules.Get(ctx, "last-day")
	if err != nil {
		t.Fatal(err)
	}
	replayed := make(chan struct{})
	s.Engine.reqs <- func() {
		s.Engine.apply(en, time.Now(), false)
		close(replayed)
	}
	<-replayed
	if warn("last-day") != 2 || warn("good") != 0 {
		t.Errorf("warnings: last-day %d good %d, want 2 and 0", warn("last-day"), warn("good"))
	}
}

// An unknown job is a 404 whatever the body: the job is looked up first.
func TestExecUnknownJobFirst(t *testing.T) {
	n := nodetest.Start(t)
	startScheduler(t, n, "a", nil)
	nc := n.Conn(t)
	for _, body := range []string{`{"job_id":"nope"}`, `{"job_id":"nope","target":{}}`, `{"job_id":"nope","target":{"all":true},"jitter":"x"}`, `{"job_id":"nope","target":{"pcs":["a b"]}}`} {
		if code, msg := call(t, nc, "kanade.jobs.exec", "", body); code != 404 || !strings.Contains(msg, "nope") {
			t.Errorf("exec %s: %d %q, want 404", body, code, msg)
		}
	}
}

// blockExecSubject makes publishes on subject fail: EXEC keeps one Command
// per subject, and refusing new ones while one is there makes the next
// publish fail until that one is removed. It returns the blocking one's ack.
func blockExecSubject(t *testing.T, js jetstream.JetStream, subject string) *jetstream.PubAck {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, wire.StreamExec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Discard, cfg.DiscardNewPerSubject = jetstream.DiscardNew, true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, subject, []byte(`{"old":true}`))
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

// A publish that fails on one subject after the others succeeded is
// retried within the request with the same ids, so the agents already
// reached do not get the Command twice and the one missed gets the same
// Command (exec_id, request_id) as the others.
func TestExecRetriesFailedSubjectsWithSameIDs(t *testing.T) {
	n := nodetest.Start(t)
	_, logs := startLogged(t, n, nil)
	nc := n.Conn(t)
	js := n.JetStream(t)
	ctx := context.Background()
	mustCall(t, nc, "kanade.jobs.put", "", echoJob)

	old := blockExecSubject(t, js, "commands.pc.B")
	st, err := js.Stream(ctx, wire.StreamExec)
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		code int
		body string
	}
	done := make(chan result, 1)
	go func() {
		code, body := call(t, nc, "kanade.jobs.exec", "", `{"job_id":"echo","target":{"pcs":["A","B"]}}`)
		done <- result{code, body}
	}()
	logs.wait(t, slog.LevelWarn, "retrying with the same ids", map[string]string{"subject": "commands.pc.B"})
	if err := st.DeleteMsg(ctx, old.Sequence); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("exec did not answer")
	}
	var rep ExecReply
	if r.code != 200 || json.Unmarshal([]byte(r.body), &rep) != nil {
		t.Fatalf("exec: %d %s, want success after the retry", r.code, r.body)
	}

	cmd := func(subject string) (wire.Command, string, uint64) {
		t.Helper()
		m, err := st.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		var c wire.Command
		if err := json.Unmarshal(m.Data, &c); err != nil {
			t.Fatalf("%s: %s", subject, m.Data)
		}
		return c, m.Header.Get(jetstream.MsgIDHeader), m.Sequence
	}
	a, aID, aSeq := cmd("commands.pc.A")
	b, bID, _ := cmd("commands.pc.B")
	if *a.ExecID != rep.ExecID || *b.ExecID != rep.ExecID || a.RequestID != b.RequestID {
		t.Errorf("A exec %s request %s, B exec %s request %s, reply exec %s: want one exec and one request id",
			*a.ExecID, a.RequestID, *b.ExecID, b.RequestID, rep.ExecID)
	}
	if aID != rep.ExecID+"/commands.pc.A" || bID != rep.ExecID+"/commands.pc.B" {
		t.Errorf("message ids %q %q", aID, bID)
	}
	// A was not commanded twice: its one Command is the only one stored.
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("commands.pc.A"))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Subjects["commands.pc.A"] != 1 || aSeq == 0 {
		t.Errorf("commands.pc.A holds %d messages", info.State.Subjects["commands.pc.A"])
	}
	if recs := executionRecords(t, js); len(recs) != 1 || recs[0].ExecID != rep.ExecID {
		t.Errorf("execution records %+v, want the one exec", recs)
	}
}

// A subject that keeps failing past the retry bound is a 503 that says
// which subjects the Command reached.
func TestExecGivesUpNamingSubjects(t *testing.T) {
	n := nodetest.Start(t)
	s, _ := startLogged(t, n, nil)
	nc := n.Conn(t)
	js := n.JetStream(t)
	ctx := context.Background()
	mustCall(t, nc, "kanade.jobs.put", "", echoJob)
	blockExecSubject(t, js, "commands.pc.B")
	firer := &Firer{JS: s.Catalog.JS, Agents: &AgentCounter{}, Log: n.Logger, RetryFor: 300 * time.Millisecond}
	_, err := ExecNow(ctx, s.Catalog, firer, ExecRequest{JobID: "echo", Target: &Target{PCs: []string{"A", "B"}}}, time.Now())
	if err == nil || !strings.Contains(err.Error(), "reached executions.") || !strings.Contains(err.Error(), "commands.pc.A but failed on commands.pc.B") {
		t.Fatalf("exec: %v, want a 503 naming the subjects reached and missed", err)
	}
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 503 {
		t.Errorf("exec error %v, want a 503", err)
	}
}

// staleness is read where upstream's manifest has it, at the top level,
// and from execute.staleness when it is not there.
func TestCommandStaleness(t *testing.T) {
	n := nodetest.Start(t)
	startScheduler(t, n, "a", nil)
	nc := n.Conn(t)
	cmds := subscribeCommands(t, nc, "commands.>")
	cases := map[string]string{
		`"staleness":{"mode":"strict"},"execute":{"shell":"sh","script":"x","timeout":"1m"}`:                                                  "strict",
		`"staleness":{"mode":"strict"},"execute":{"shell":"sh","script":"x","timeout":"1m","staleness":{"mode":"loose"}}`:                     "strict",
		`"execute":{"shell":"sh","script":"x","timeout":"1m","staleness":{"mode":"loose"}}`:                                                   "loose",
		`"execute":{"shell":"sh","script":"x","timeout":"1m"}`:                                                                                "cached",
		"\"staleness\":{\"mode\":\"\"},\"execute\":{\"shell\":\"sh\",\"script\":\"x\",\"timeout\":\"1m\",\"staleness\":{\"mode\":\"loose\"}}": "loose",
	}
	for manifest, want := range cases {
		mustCall(t, nc, "kanade.jobs.put", "", `{"id":"st","version":"1",`+manifest+`}`)
		mustCall(t, nc, "kanade.jobs.exec", "", `{"job_id":"st","target":{"pcs":["PC1"]}}`)
		if c, _ := cmds.next(t); c.Staleness.Mode != want {
			t.Errorf("manifest {%s}: command staleness %q, want %q", manifest, c.Staleness.Mode, want)
		}
	}
	// YAML as upstream writes it.
	mustCall(t, nc, "kanade.jobs.put", "application/yaml", "id: st\nversion: 1.0.0\nstaleness:\n  mode: strict\nexecute:\n  shell: sh\n  script: x\n  timeout: 30s\n")
	mustCall(t, nc, "kanade.jobs.exec", "", `{"job_id":"st","target":{"all":true}}`)
	if c, _ := cmds.next(t); c.Staleness.Mode != "strict" {
		t.Errorf("YAML manifest: command staleness %q", c.Staleness.Mode)
	}
}

// The jobs list gives each job its running and pending executions from
// the executions table, and keeps the stored manifest as it is.
func TestJobsListLive(t *testing.T) {
	n := nodetest.Start(t)
	startScheduler(t, n, "a", nil)
	nc := n.Conn(t)
	mustCall(t, nc, "kanade.jobs.put", "", echoJob)
	mustCall(t, nc, "kanade.jobs.put", "", `{"id":"inv","version":"2","owner":"ops","execute":{"shell":"sh","script":"x","timeout":"1m"}}`)
	mustCall(t, nc, "kanade.jobs.put", "", `{"id":"idle","version":"1","execute":{"shell":"sh","script":"x","timeout":"1m"}}`)
	rows := map[string][]string{
		"echo":  {"running", "running", "pending", "completed", "expired"},
		"inv":   {"pending", "pending", "pending", "completed"},
		"other": {"running"}, // a job no longer in the catalog
	}
	i := 0
	for job, statuses := range rows {
		for _, st := range statuses {
			i++
			if _, err := n.DB.W.Exec(`INSERT INTO executions (exec_id, job_id, initiated_at, status) VALUES (?, ?, ?, ?)`,
				"e"+strings.Repeat("0", 3)+string(rune('a'+i)), job, store.FormatTime(time.Now()), st); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Stored as pending or running but shown otherwise by the executions
	// API: past its deadline (expired), and every target answered
	// (completed). Neither is live.
	if _, err := n.DB.W.Exec(`INSERT INTO executions (exec_id, job_id, initiated_at, status, deadline_at)
		VALUES ('e-late', 'echo', '2026-05-16T00:00:00.000000000Z', 'pending', '2026-05-16T01:00:00.000000000Z')`); err != nil {
		t.Fatal(err)
	}
	if _, err := n.DB.W.Exec(`INSERT INTO executions (exec_id, job_id, initiated_at, status, target_count, success_count, skipped_count)
		VALUES ('e-done', 'inv', '2026-05-16T00:00:00.000000000Z', 'running', 2, 1, 1)`); err != nil {
		t.Fatal(err)
	}
	var list []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(mustCall(t, nc, "kanade.jobs.list", "", "")), &list); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"echo": `{"running":2,"pending":1}`, "idle": `{"running":0,"pending":0}`, "inv": `{"running":0,"pending":3}`}
	if len(list) != 3 {
		t.Fatalf("list: %d jobs", len(list))
	}
	for _, j := range list {
		var id string
		json.Unmarshal(j["id"], &id)
		if string(j["live"]) != want[id] {
			t.Errorf("job %s live %s, want %s", id, j["live"], want[id])
		}
		// Without live, the item is the stored manifest.
		delete(j, "live")
		got, _ := json.Marshal(j)
		var stored map[string]json.RawMessage
		json.Unmarshal([]byte(mustCall(t, nc, "kanade.jobs.get", "", `{"job_id":"`+id+`"}`)), &stored)
		if s, _ := json.Marshal(stored); string(s) != string(got) {
			t.Errorf("job %s listed as %s, stored as %s", id, got, s)
		}
	}
	// A list item put back (an edit from the list) is stored without it.
	item, _ := json.Marshal(map[string]any{"id": "idle", "version": "1", "live": map[string]int{"running": 1},
		"execute": map[string]string{"shell": "sh", "script": "x", "timeout": "1m"}})
	if out := mustCall(t, nc, "kanade.jobs.put", "", string(item)); strings.Contains(out, "live") {
		t.Errorf("put of a list item stored %s", out)
	}
}
