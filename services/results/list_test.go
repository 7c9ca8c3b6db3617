package results

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

var t0 = time.Date(2026, 5, 16, 0, 0, 0, 0, time.UTC)

func TestRowShapeAndDetail(t *testing.T) {
	e := start(t, Options{})
	legacy := wire.LegacyResultID("req-old", "PC9")
	insert(t, e.n.DB,
		rec{id: "r-done", exec: "x1", pc: "PC1", job: "inv", version: "1.0.0", exit: code(0), stdout: "ok\n", stderr: "warn",
			started: t0, finished: t0.Add(5 * time.Second)},
		rec{id: "r-flight", exec: "x1", pc: "PC2", job: "inv", started: t0.Add(1500 * time.Millisecond)},
		rec{id: legacy, request: "req-old", pc: "PC9", exit: code(3), started: t0.Add(-time.Hour), finished: t0.Add(-time.Hour)},
	)
	rows := e.list(t, nil)
	if got := ids(rows); !slices.Equal(got, []string{"r-flight", "r-done", legacy}) {
		t.Fatalf("order: %v", got)
	}
	// The exact JSON a client sees: nulls while in flight, RFC 3339 times.
	_, body := e.call(t, "kanade.results.detail", map[string]string{"result_id": "r-flight"})
	want := `{"result_id":"r-flight","request_id":"req-r-flight","exec_id":"x1","pc_id":"PC2","exit_code":null,"stdout":"","stderr":"",` +
		`"started_at":"2026-05-16T00:00:01.5Z","finished_at":null,"job_id":"inv","version":null,` +
		`"stdout_truncated":false,"stderr_truncated":false,"stdout_bytes":0,"stderr_bytes":0}`
	if string(body) != want {
		t.Fatalf("detail:\n got %s\nwant %s", body, want)
	}
	_, body = e.call(t, "kanade.results.detail", map[string]string{"result_id": "r-done"})
	want = `{"result_id":"r-done","request_id":"req-r-done","exec_id":"x1","pc_id":"PC1","exit_code":0,"stdout":"ok\n","stderr":"warn",` +
		`"started_at":"2026-05-16T00:00:00Z","finished_at":"2026-05-16T00:00:05Z","job_id":"inv","version":"1.0.0",` +
		`"stdout_truncated":false,"stderr_truncated":false,"stdout_bytes":3,"stderr_bytes":4}`
	if string(body) != want {
		t.Fatalf("detail:\n got %s\nwant %s", body, want)
	}
	// A legacy row is addressed by its derived id; a list row and the
	// detail of the same id are the same JSON.
	r, err := Detail(context.Background(), e.n.DB, legacy)
	if err != nil || r.PCID != "PC9" || r.ExecID != nil || r.JobID != nil || *r.ExitCode != 3 {
		t.Fatalf("legacy detail: %+v %v", r, err)
	}
	lj, _ := json.Marshal(rows[2])
	dj, _ := json.Marshal(r)
	if string(lj) != string(dj) {
		t.Fatalf("list row %s != detail %s", lj, dj)
	}
	if c, b := e.call(t, "kanade.results.detail", map[string]string{"result_id": "nope"}); c != "404" || string(b) != "result nope not found" {
		t.Fatalf("unknown id: %s %s", c, b)
	}
	if c, b := e.call(t, "kanade.results.detail", nil); c != "400" || !strings.Contains(string(b), "result_id") {
		t.Fatalf("missing id: %s %s", c, b)
	}
}

func TestListFilters(t *testing.T) {
	e := start(t, Options{})
	insert(t, e.n.DB,
		rec{id: "a", exec: "e-1", pc: "PC001", job: "foo-job", exit: code(0), stdout: "hello\nworld\n\\x", started: t0.Add(6 * time.Minute), finished: t0.Add(7 * time.Minute)},
		rec{id: "b", exec: "e-1", pc: "PC0010", job: "foo-job", exit: code(2), stderr: "boom", started: t0.Add(5 * time.Minute), finished: t0.Add(7 * time.Minute)},
		rec{id: "c", pc: "PC002", exit: code(-1), stdout: "world\n50%_Done", started: t0.Add(4 * time.Minute), finished: t0.Add(7 * time.Minute)},
		rec{id: "d", exec: "e-2", pc: "PC001", job: "bar", started: t0.Add(3 * time.Minute)},
		rec{id: "e", exec: "e-2", pc: "pc001", job: "", exit: code(0), started: t0.Add(3 * time.Minute), finished: t0.Add(8 * time.Minute)},
	)
	for _, c := range []struct {
		p    Params
		want []string
	}{
		{Params{}, []string{"a", "b", "c", "e", "d"}}, // d and e share a start: result_id DESC
		{Params{PCID: "PC001"}, []string{"a", "b", "d"}},
		{Params{PCID: "^PC001$"}, []string{"a", "d"}},
		{Params{PCID: "^PC00"}, []string{"a", "b", "c", "d"}},
		{Params{PCID: "(?i)^pc001$"}, []string{"a", "e", "d"}},
		{Params{PCID: "^PC0(01|02)$"}, []string{"a", "c", "d"}},
		{Params{PCID: "^NOPE"}, []string{}},
		{Params{JobID: "^foo"}, []string{"a", "b"}},
		{Params{JobID: "o"}, []string{"a", "b"}},
		{Params{JobID: "^$"}, []string{"c", "e"}}, // NULL job_id matches as ""
		{Params{JobID: "^(bar)?$"}, []string{"c", "e", "d"}},
		{Params{JobID: "^foo-job$", PCID: "10"}, []string{"b"}},
		{Params{ExecID: "e-2"}, []string{"e", "d"}},
		{Params{ExecID: "^e-1$"}, []string{"a", "b"}},
		{Params{ExecID: "^$"}, []string{"c"}},
		{Params{Stdout: "world"}, []string{"a", "c"}},
		{Params{Stdout: "(?m)^world$"}, []string{"a", "c"}},
		{Params{Stdout: "^world$"}, []string{}},
		{Params{Stderr: "bo+m"}, []string{"b"}},
		{Params{Stderr: "(?i)BOOM"}, []string{"b"}},
		{Params{Stdout: "(?i)50%_d"}, []string{"c"}},
		{Params{Stdout: `.*\\x`}, []string{"a"}},
		{Params{Status: "success"}, []string{"a", "e"}},
		{Params{Status: "failure"}, []string{"b", "c"}},
		{Params{Status: "running"}, []string{"d"}},
		{Params{Status: "running", PCID: "^PC001$"}, []string{"d"}},
		{Params{Since: "2026-05-16T00:04:00Z"}, []string{"a", "b", "c"}},
		{Params{Since: "2026-05-16T09:04:00+09:00"}, []string{"a", "b", "c"}},
		{Params{Limit: 2}, []string{"a", "b"}},
		{Params{Limit: 2, PCID: "PC"}, []string{"a", "b"}},
		{Params{Before: "2026-05-16T00:03:00Z,e"}, []string{"d"}},
		{Params{Before: "2026-05-16T00:05:00Z,b", PCID: "PC00"}, []string{"c", "d"}},
	} {
		got := ids(e.list(t, c.p))
		if !slices.Equal(got, c.want) {
			t.Errorf("%+v: got %v, want %v", c.p, got, c.want)
		}
		direct, err := List(context.Background(), e.n.DB, c.p)
		if err != nil || !slices.Equal(ids(direct), c.want) {
			t.Errorf("direct %+v: got %v %v, want %v", c.p, ids(direct), err, c.want)
		}
	}
}

func TestListLimit(t *testing.T) {
	e := start(t, Options{})
	var recs []rec
	for i := range 1005 {
		recs = append(recs, rec{id: fmt.Sprintf("r%04d", i), pc: "PC1", exit: code(0), started: t0.Add(time.Duration(i) * time.Second), finished: t0})
	}
	insert(t, e.n.DB, recs...)
	if n := len(e.list(t, nil)); n != DefaultLimit {
		t.Fatalf("default limit: %d rows", n)
	}
	if n := len(e.list(t, `{"limit":0}`)); n != DefaultLimit {
		t.Fatalf("limit 0: %d rows", n)
	}
	if n := len(e.list(t, Params{Limit: MaxLimit})); n != MaxLimit {
		t.Fatalf("limit max: %d rows", n)
	}
	for _, l := range []int{MaxLimit + 1, -1} {
		c, b := e.call(t, "kanade.results.list", Params{Limit: l})
		if c != "400" || !strings.HasPrefix(string(b), "parameter limit:") {
			t.Fatalf("limit %d: %s %s", l, c, b)
		}
	}
}

func TestListBadInput(t *testing.T) {
	e := start(t, Options{})
	for _, c := range []struct{ body, want string }{
		{`{"job_id":"a[")`, "request body is not valid JSON"},
		{`{"status":"failed"}`, "parameter status:"},
		{`{"since":"yesterday"}`, "parameter since:"},
		{`{"since":"2026-05-16"}`, "parameter since:"},
		{`{"before":"nonsense"}`, "parameter before:"},
		{`{"before":"2026-05-16T00:00:00Z,"}`, "parameter before:"},
		{`{"before":"16 May,r1"}`, "parameter before:"},
		{`{"limit":"20"}`, "parameter limit: must be an integer"},
		{`{"limit":2.5}`, "parameter limit"},
		{`[1,2]`, "request body: must be a JSON object of parameters"},
		{`not json`, "request body is not valid JSON"},
		{`{} {}`, "one JSON object expected"},
	} {
		code, body := e.call(t, "kanade.results.list", c.body)
		if code != "400" || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: got %s %q, want 400 containing %q", c.body, code, body, c.want)
		}
	}
	// A bad regex answers upstream's text exactly, in every filter:
	// ``invalid regex `PATTERN`: REASON`` and nothing after it.
	for _, c := range []struct{ body, want string }{
		{`{"pc_id":"("}`, "invalid regex `(`: error parsing regexp: missing closing ): `(`"},
		{`{"job_id":"a["}`, "invalid regex `a[`: error parsing regexp: missing closing ]: `[`"},
		{`{"exec_id":"*"}`, "invalid regex `*`: error parsing regexp: missing argument to repetition operator: `*`"},
		{`{"stdout":"x{2,1}"}`, "invalid regex `x{2,1}`: error parsing regexp: invalid repeat count: `{2,1}`"},
		{`{"stderr":"\\"}`, "invalid regex `\\`: error parsing regexp: trailing backslash at end of expression: ``"},
	} {
		if code, body := e.call(t, "kanade.results.list", c.body); code != "400" || string(body) != c.want {
			t.Errorf("%s: got %s %q, want 400 %q", c.body, code, body, c.want)
		}
	}
	_, err := List(context.Background(), e.n.DB, Params{PCID: "(x"})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Message != "invalid regex `(x`: error parsing regexp: missing closing ): `(x`" {
		t.Fatalf("direct invalid regex: %v", err)
	}
	// An unknown key is ignored, as upstream: a cache-buster does not
	// fail the list.
	if code, body := e.call(t, "kanade.results.list", `{"colour":"red","_":"1764201600000","limit":1}`); code != "" {
		t.Errorf("unknown keys: %s %s", code, body)
	}
}

// The seed's two since regressions, translated.
func TestSinceMatchesSameUTCDayRows(t *testing.T) {
	e := start(t, Options{})
	now := time.Now().UTC()
	insert(t, e.n.DB, rec{id: "r-1", pc: "pc-1", exit: code(0), started: now.Add(-10 * time.Minute),
		finished: now.Add(-9 * time.Minute), recorded: now.Add(-9 * time.Minute)})
	if rows := e.list(t, Params{Since: now.Add(-24 * time.Hour).Format(time.RFC3339)}); len(rows) != 1 {
		t.Fatalf("a row that ran minutes ago must be inside the rolling 24h window: %d rows", len(rows))
	}
	if rows := e.list(t, Params{Since: now.Add(5 * time.Minute).Format(time.RFC3339Nano)}); len(rows) != 0 {
		t.Fatalf("a future bound must exclude the row: %d rows", len(rows))
	}
}

func TestSinceFiltersOnStartedAtNotRecordedAt(t *testing.T) {
	e := start(t, Options{})
	now := time.Now().UTC()
	insert(t, e.n.DB, rec{id: "r-replayed", pc: "pc-1", exit: code(0), started: now.AddDate(0, 0, -21),
		finished: now.AddDate(0, 0, -21), recorded: now})
	if rows := e.list(t, Params{Since: now.Add(-24 * time.Hour).Format(time.RFC3339)}); len(rows) != 0 {
		t.Fatalf("a re-projected three-week-old run must not flood the 24h window: %d rows", len(rows))
	}
	if rows := e.list(t, Params{Since: now.AddDate(0, 0, -30).Format(time.RFC3339)}); len(rows) != 1 {
		t.Fatalf("the run shows once the window covers its run time: %d rows", len(rows))
	}
}

// Upstream fetched the newest 10,000 rows and filtered them in Rust, so a
// match older than that was silently missing.
func TestRegexFindsRowsBeyondTheFirst10000(t *testing.T) {
	e := start(t, Options{})
	var recs []rec
	for i := range 10_050 {
		r := rec{id: fmt.Sprintf("r%05d", i), pc: fmt.Sprintf("PC%04d", i%500), job: "daily", exit: code(0),
			stdout: "nothing to see", started: t0.Add(time.Duration(i) * time.Second), finished: t0}
		if i < 40 { // the oldest rows
			r.pc, r.stdout, r.job = "PC-NEEDLE", "found a needle here", "rare-job"
		}
		recs = append(recs, r)
	}
	insert(t, e.n.DB, recs...)
	for _, p := range []Params{{PCID: "NEEDLE"}, {Stdout: "needle"}, {JobID: "rare"}, {Stdout: "needle", PCID: "PC"}, {Status: "success", Stdout: "needle"}} {
		if n := len(e.list(t, p)); n != 40 {
			t.Errorf("%+v: %d rows, want 40", p, n)
		}
	}
}

// Every plan (distinct values then index, or the started_at walk) gives
// the rows a plain reading of the contract gives, page after page.
func TestListMatchesContractModel(t *testing.T) {
	e := start(t, Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	var recs []rec
	for range 3000 {
		r := rec{id: fmt.Sprintf("%08x", rng.Uint32()), pc: fmt.Sprintf("PC%03d", rng.IntN(300)),
			stdout:  []string{"ok", "error: disk", "warn\nerror: net", ""}[rng.IntN(4)],
			started: t0.Add(time.Duration(rng.IntN(5000)) * time.Second)}
		if rng.IntN(5) > 0 {
			r.job = fmt.Sprintf("job-%d", rng.IntN(12))
		}
		if rng.IntN(3) > 0 {
			r.exec = fmt.Sprintf("ex-%02d", rng.IntN(40))
		}
		switch rng.IntN(4) {
		case 0: // in flight
		case 1:
			r.exit, r.finished = code(int64(rng.IntN(3))), r.started.Add(time.Minute)
		default:
			r.exit, r.finished = code(0), r.started.Add(time.Minute)
		}
		if rng.IntN(200) == 0 {
			r.started = time.Time{}
		}
		recs = append(recs, r)
	}
	insert(t, e.n.DB, recs...)
	since := t0.Add(2500 * time.Second).Format(time.RFC3339)
	for _, p := range []Params{
		{}, {PCID: "^PC01"}, {PCID: "^PC017$"}, {PCID: "7"}, {PCID: "PC"}, {PCID: "^PC1[0-4]"},
		{JobID: "^job-1"}, {JobID: "^$"}, {JobID: "1|^$"}, {ExecID: "3"}, {ExecID: "^ex-07$"},
		{Stdout: "error"}, {Stdout: "(?m)^error"}, {Stdout: "(?i)ERROR: DISK"}, {Stdout: "o.*(?i:NET)"}, {Status: "running"}, {Status: "failure", PCID: "5"},
		{PCID: "^PC2", JobID: "job-3", Since: since}, {Since: since, Stdout: "disk"}, {ExecID: "^ex-1", Status: "success"},
	} {
		for _, limit := range []int{13, 200} {
			p.Limit = limit
			want := model(recs, p)
			var got []Row
			page := p
			for {
				rows, err := List(context.Background(), e.n.DB, page)
				if err != nil {
					t.Fatalf("%+v: %v", page, err)
				}
				got = append(got, rows...)
				if len(rows) < limit {
					break
				}
				last := rows[len(rows)-1]
				started := ""
				if last.StartedAt != nil {
					started = *last.StartedAt
				}
				page.Before = started + "," + last.ResultID
			}
			if !slices.Equal(ids(got), want) {
				t.Errorf("%+v: paged %d rows, want %d\n got %v\nwant %v", p, len(got), len(want), ids(got), want)
			}
		}
	}
}

// model is the contract read literally over every row, in list order.
func model(recs []rec, p Params) []string {
	match := func(pattern, v string) bool { return pattern == "" || regexp.MustCompile(pattern).MatchString(v) }
	var since time.Time
	if p.Since != "" {
		since, _ = time.Parse(time.RFC3339, p.Since)
	}
	var keep []rec
	for _, r := range recs {
		switch {
		case !match(p.PCID, r.pc), !match(p.JobID, r.job), !match(p.ExecID, r.exec),
			!match(p.Stdout, r.stdout), !match(p.Stderr, r.stderr):
			continue
		case p.Status == "success" && (r.exit == nil || *r.exit != 0),
			p.Status == "failure" && (r.exit == nil || *r.exit == 0),
			p.Status == "running" && !r.finished.IsZero():
			continue
		case !since.IsZero() && (r.started.IsZero() || r.started.Before(since)):
			continue
		}
		keep = append(keep, r)
	}
	slices.SortFunc(keep, func(a, b rec) int {
		// Newest first; a null started_at sorts last; then result_id DESC.
		if c := strings.Compare(timeKey(b.started), timeKey(a.started)); c != 0 {
			return c
		}
		return strings.Compare(b.id, a.id)
	})
	out := []string{}
	for _, r := range keep {
		out = append(out, r.id)
	}
	return out
}

// timeKey is the stored text of t; NULL ("") sorts first, as in SQLite.
func timeKey(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return store.FormatTime(t)
}

// result_exec_ids follows execution_results through the projector's
// upserts and retention deletes (migrations 0200, 0201).
func TestExecIDValuesFollowRows(t *testing.T) {
	e := start(t, Options{})
	insert(t, e.n.DB, rec{id: "r1", pc: "PC1", started: t0}, rec{id: "r2", exec: "ex-a", pc: "PC1", started: t0})
	values := func() []string {
		var out []string
		rows, err := e.n.DB.R.Query(`SELECT exec_id FROM result_exec_ids ORDER BY exec_id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var v string
			rows.Scan(&v)
			out = append(out, v)
		}
		return out
	}
	// The projector sets exec_id on a row it made from the other message.
	if _, err := e.n.DB.W.Exec(`INSERT INTO execution_results (result_id, request_id, pc_id, recorded_at) VALUES ('r1', 'q', 'PC1', 'x')
		ON CONFLICT (result_id) DO UPDATE SET exec_id = COALESCE(exec_id, 'ex-b')`); err != nil {
		t.Fatal(err)
	}
	if got := values(); !slices.Equal(got, []string{"ex-a", "ex-b"}) {
		t.Fatalf("after upsert: %v", got)
	}
	if got := ids(e.list(t, Params{ExecID: "b"})); !slices.Equal(got, []string{"r1"}) {
		t.Fatalf("exec_id regex: %v", got)
	}
	if _, err := e.n.DB.W.Exec(`DELETE FROM execution_results WHERE result_id = 'r2'`); err != nil {
		t.Fatal(err)
	}
	if got := values(); !slices.Equal(got, []string{"ex-b"}) {
		t.Fatalf("after delete: %v", got)
	}
}
