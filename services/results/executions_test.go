package results

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/store"
)

type execRec struct {
	id, job, status string
	initiated       time.Time
	target, ok, bad int
	skipped         int
	deadline        time.Time
}

func insertExecs(t *testing.T, db *store.DB, recs ...execRec) {
	t.Helper()
	err := db.WriteTx(context.Background(), func(tx *sql.Tx) error {
		for _, r := range recs {
			if _, err := tx.Exec(`INSERT INTO executions (exec_id, job_id, version, initiated_by, initiated_at, target_count,
				success_count, failure_count, skipped_count, status, deadline_at) VALUES (?, ?, '1.0.0', 'scheduler', ?, ?, ?, ?, ?, ?, ?)`,
				r.id, r.job, store.FormatTime(r.initiated), r.target, r.ok, r.bad, r.skipped, r.status, store.NullTime(r.deadline)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestExecutions(t *testing.T) {
	e := start(t, Options{})
	now := time.Now().UTC()
	insertExecs(t, e.n.DB,
		execRec{id: "x-done", job: "inv", status: "running", initiated: now.Add(-5 * time.Hour), target: 2, ok: 1, bad: 1},
		execRec{id: "x-late", job: "inv", status: "pending", initiated: now.Add(-4 * time.Hour), target: 3, deadline: now.Add(-time.Hour)},
		execRec{id: "x-run", job: "inv", status: "running", initiated: now.Add(-3 * time.Hour), target: 3, ok: 1, deadline: now.Add(time.Hour)},
		execRec{id: "x-pend", job: "other", status: "pending", initiated: now.Add(-2 * time.Hour), target: 1, deadline: now.Add(time.Hour)},
		// Every target answered, one of them skipping: complete at read
		// time even if the stored status lags.
		execRec{id: "x-skip", job: "other", status: "running", initiated: now.Add(-90 * time.Minute), target: 2, ok: 1, skipped: 1},
	)
	insert(t, e.n.DB,
		rec{id: "r2", exec: "x-done", pc: "PC2", job: "inv", exit: code(1), started: t0, finished: t0.Add(time.Second)},
		rec{id: "r1", exec: "x-done", pc: "PC1", job: "inv", exit: code(0), started: t0, finished: t0.Add(time.Second)},
		rec{id: "r3", exec: "x-run", pc: "PC1", job: "inv", started: t0},
		// In flight under an exec the executions table does not know.
		rec{id: "r4", exec: "x-orphan", pc: "PC3", job: "inv", started: t0},
	)
	list := func(body string) []Execution {
		t.Helper()
		c, b := e.call(t, "kanade.executions.list", body)
		if c != "" {
			t.Fatalf("%s: %s %s", body, c, b)
		}
		var out []Execution
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	status := func(xs []Execution) []string {
		var out []string
		for _, x := range xs {
			out = append(out, x.ExecID+"="+x.Status)
		}
		return out
	}
	all := list("")
	if got, want := status(all), []string{"x-skip=completed", "x-pend=pending", "x-run=running", "x-late=expired", "x-done=completed"}; !slices.Equal(got, want) {
		t.Errorf("list: %v, want %v", got, want)
	}
	if all[0].SkippedCount != 1 || all[0].SuccessCount != 1 || all[0].FailureCount != 0 {
		t.Errorf("skipped execution %+v", all[0])
	}
	if got, want := status(list(`{"job_id":"inv","limit":2}`)), []string{"x-run=running", "x-late=expired"}; !slices.Equal(got, want) {
		t.Errorf("by job: %v, want %v", got, want)
	}
	for st, want := range map[string][]string{"expired": {"x-late=expired"}, "completed": {"x-skip=completed", "x-done=completed"}, "pending": {"x-pend=pending"}} {
		if got := status(list(`{"status":"` + st + `"}`)); !slices.Equal(got, want) {
			t.Errorf("status %s: %v, want %v", st, got, want)
		}
	}
	for _, body := range []string{`{"status":"done"}`, `{"limit":5000}`, `{"job_id":3}`} {
		if c, _ := e.call(t, "kanade.executions.list", body); c != "400" {
			t.Errorf("%s: %s, want 400", body, c)
		}
	}
	// An unknown key is ignored, as upstream: {"job":…} filters nothing.
	if got := status(list(`{"job":"inv","_":"1"}`)); len(got) != 5 {
		t.Errorf("unknown key: %v, want the 5 executions", got)
	}

	_, b := e.call(t, "kanade.executions.detail", `{"exec_id":"x-done"}`)
	var d ExecutionDetails
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if d.Execution.Status != "completed" || len(d.Results) != 2 || d.Results[0].PCID != "PC1" || *d.Results[1].ExitCode != 1 ||
		*d.Results[0].StartedAt != "2026-05-16T00:00:00Z" || !strings.Contains(string(b), `"initiated_by":"scheduler"`) {
		t.Errorf("detail: %s", b)
	}
	// Upstream's per-result skipped: the agent chose not to run.
	if _, err := e.n.DB.W.Exec(`UPDATE execution_results SET skipped = 1, exit_code = 126 WHERE result_id = 'r2'`); err != nil {
		t.Fatal(err)
	}
	if _, b := e.call(t, "kanade.executions.detail", `{"exec_id":"x-done"}`); !strings.Contains(string(b), `"pc_id":"PC1","exit_code":0,"skipped":false,`) ||
		!strings.Contains(string(b), `"pc_id":"PC2","exit_code":126,"skipped":true,`) {
		t.Errorf("detail skipped: %s", b)
	}
	if c, b := e.call(t, "kanade.executions.detail", `{"exec_id":"nope"}`); c != "404" {
		t.Errorf("unknown exec: %s %s", c, b)
	}

	// Kill: an empty kill.{exec_id} for every execution that may still run.
	agent := e.n.Conn(t)
	kills, err := agent.SubscribeSync("kill.>")
	if err != nil {
		t.Fatal(err)
	}
	agent.Flush()
	killed := func() []string {
		t.Helper()
		var got []string
		for {
			m, err := kills.NextMsg(300 * time.Millisecond)
			if err == nats.ErrTimeout {
				return got
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Data) != 0 {
				t.Errorf("kill with a body: %q", m.Data)
			}
			got = append(got, m.Subject)
		}
	}
	c, body := e.call(t, "kanade.jobs.kill", `{"job_id":"inv"}`)
	if c != "" || len(body) != 0 {
		t.Fatalf("kill: %s %q", c, body)
	}
	if got, want := killed(), []string{"kill.x-late", "kill.x-orphan", "kill.x-run"}; !slices.Equal(got, want) {
		t.Errorf("kill inv: %v, want %v", got, want)
	}
	if c, body := e.call(t, "kanade.jobs.kill", `{"job_id":"idle"}`); c != "" || len(body) != 0 {
		t.Errorf("kill with nothing running: %s %q", c, body)
	}
	if got := killed(); len(got) != 0 {
		t.Errorf("kill idle published %v", got)
	}
	if c, _ := e.call(t, "kanade.jobs.kill", `{}`); c != "400" {
		t.Errorf("kill without job_id: %s", c)
	}
}

// nats micro ls/info show the two services and each endpoint's route.
func TestMicroDiscovery(t *testing.T) {
	e := start(t, Options{})
	routes := map[string]string{}
	for _, svc := range []string{"results", "executions"} {
		m, err := e.nc.Request("$SRV.INFO."+svc, nil, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", svc, err)
		}
		var info struct {
			Endpoints []struct {
				Subject  string            `json:"subject"`
				Metadata map[string]string `json:"metadata"`
			} `json:"endpoints"`
		}
		if err := json.Unmarshal(m.Data, &info); err != nil {
			t.Fatal(err)
		}
		for _, ep := range info.Endpoints {
			routes[ep.Subject] = ep.Metadata["http"] + " " + ep.Metadata["int_params"]
		}
	}
	want := map[string]string{
		"kanade.results.list":      "GET /api/results limit",
		"kanade.results.detail":    "GET /api/results/{result_id} ",
		"kanade.results.tail":      "GET /api/results/{result_id}/tail ",
		"kanade.executions.list":   "GET /api/executions limit",
		"kanade.executions.detail": "GET /api/executions/{exec_id} ",
		"kanade.jobs.kill":         "POST /api/jobs/{job_id}/kill ",
	}
	for s, r := range want {
		if routes[s] != r {
			t.Errorf("%s: %q, want %q", s, routes[s], r)
		}
	}
}

// An execution whose target never answers (an unknown PC) ends expired:
// a pending one (no result at all) after its deadline and at least an
// hour, as upstream; a running one after its deadline (run timeout,
// jitter and the reaper's margin, set by whoever fired it); rows without
// a deadline after an hour plus the timeout and the margin.
func TestExecutionNeverAnsweredExpires(t *testing.T) {
	e := start(t, Options{})
	now := time.Now().UTC()
	insertExecs(t, e.n.DB,
		execRec{id: "x-ghost", job: "j", status: "pending", initiated: now, target: 1, deadline: now.Add(3 * time.Minute)},
		execRec{id: "x-half", job: "j", status: "running", initiated: now, target: 2, ok: 1, deadline: now.Add(3 * time.Minute)},
		execRec{id: "x-old", job: "j", status: "running", initiated: now, target: 2, ok: 1},
	)
	status := func(id string, at time.Time) string {
		d, err := ExecutionDetail(context.Background(), e.n.DB, id, at)
		if err != nil {
			t.Fatal(err)
		}
		return d.Execution.Status
	}
	for _, c := range []struct {
		id    string
		after time.Duration
		want  string
	}{
		{"x-ghost", 10 * time.Minute, "pending"},
		{"x-ghost", 61 * time.Minute, "expired"},
		{"x-half", 2 * time.Minute, "running"},
		{"x-half", 4 * time.Minute, "expired"},
		{"x-old", 61 * time.Minute, "running"},
		{"x-old", 63 * time.Minute, "expired"},
	} {
		if got := status(c.id, now.Add(c.after)); got != c.want {
			t.Errorf("%s after %v: %s, want %s", c.id, c.after, got, c.want)
		}
	}
	xs, err := ListExecutions(context.Background(), e.n.DB, ExecutionParams{Status: "expired"}, now.Add(2*time.Hour))
	if err != nil || len(xs) != 3 {
		t.Fatalf("expired list: %v %v", xs, err)
	}
}

// A broadcast's runs that do not fit one reply come in parts: the first
// ones that fit, results_truncated and next, then the rest from after=next.
func TestExecutionDetailPagesItsRuns(t *testing.T) {
	e := start(t, Options{})
	insertExecs(t, e.n.DB, execRec{id: "x-big", job: "j", status: "running", initiated: time.Now(), target: 6000})
	var recs []rec
	for i := range 6000 {
		recs = append(recs, rec{id: fmt.Sprintf("result-%05d-%s", i, strings.Repeat("x", 40)), exec: "x-big", pc: fmt.Sprintf("PC%05d", i),
			exit: code(0), started: t0, finished: t0})
	}
	insert(t, e.n.DB, recs...)
	seen := map[string]bool{}
	after, parts := "", 0
	for {
		body, _ := json.Marshal(map[string]string{"exec_id": "x-big", "after": after})
		c, b := e.call(t, "kanade.executions.detail", string(body))
		var d ExecutionDetails
		if c != "" || json.Unmarshal(b, &d) != nil || len(b) > int(e.nc.MaxPayload()) {
			t.Fatalf("part %d: %s %d bytes", parts, c, len(b))
		}
		parts++
		for _, r := range d.Results {
			if seen[r.ResultID] {
				t.Fatalf("%s twice", r.ResultID)
			}
			seen[r.ResultID] = true
		}
		if !d.ResultsTruncated {
			break
		}
		after = d.Next
	}
	if len(seen) != 6000 || parts < 2 {
		t.Fatalf("%d runs in %d parts", len(seen), parts)
	}
	if c, _ := e.call(t, "kanade.executions.detail", `{"exec_id":"x-big","after":"PC1"}`); c != "400" {
		t.Fatalf("bad after: %s", c)
	}
}
