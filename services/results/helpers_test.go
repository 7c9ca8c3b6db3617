package results

import (
	"context"
	"database/sql"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/store"
)

// rec is a row as the projector writes it; "" is NULL for the nullable
// text columns, a nil exit code and zero times are NULL.
type rec struct {
	id, request, exec, pc, job, version string
	exit                                *int64
	stdout, stderr                      string
	started, finished, recorded         time.Time
}

func code(c int64) *int64 { return &c }

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// insert writes rows and keeps the distinct-value tables in step, as the
// projector does.
func insert(t testing.TB, db *store.DB, recs ...rec) {
	t.Helper()
	err := db.WriteTx(context.Background(), func(tx *sql.Tx) error {
		ins, err := tx.Prepare(`INSERT INTO execution_results (result_id, request_id, exec_id, pc_id, exit_code, stdout, stderr,
			started_at, finished_at, recorded_at, job_id, version, stdout_preview, stderr_preview)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for _, r := range recs {
			if r.request == "" {
				r.request = "req-" + r.id
			}
			if r.recorded.IsZero() {
				r.recorded = time.Now()
			}
			var exit any
			if r.exit != nil {
				exit = *r.exit
			}
			stdout, stdoutPre := storedOutput(r.stdout)
			stderr, stderrPre := storedOutput(r.stderr)
			if _, err := ins.Exec(r.id, r.request, nullable(r.exec), r.pc, exit, stdout, stderr,
				store.NullTime(r.started), store.NullTime(r.finished), store.FormatTime(r.recorded), nullable(r.job), nullable(r.version),
				stdoutPre, stderrPre); err != nil {
				return err
			}
			if _, err := tx.Exec(`INSERT OR IGNORE INTO result_pc_ids (pc_id) VALUES (?)`, r.pc); err != nil {
				return err
			}
			if r.job != "" {
				if _, err := tx.Exec(`INSERT OR IGNORE INTO result_job_ids (job_id) VALUES (?)`, r.job); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// env is a node with the three services started.
type env struct {
	n   *nodetest.Node
	nc  *nats.Conn
	svc *Service
}

func start(t *testing.T, o Options) *env {
	t.Helper()
	n := nodetest.Start(t)
	o.Conn, o.DB, o.Logger = n.Conn(t), n.DB, n.Logger
	svc, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return &env{n: n, nc: n.Conn(t), svc: svc}
}

// call requests subject with body v and returns the reply's error code
// ("" on success) and body.
func (e *env) call(t testing.TB, subject string, v any) (string, []byte) {
	t.Helper()
	var data []byte
	switch b := v.(type) {
	case nil:
	case string:
		data = []byte(b)
	default:
		var err error
		if data, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	msg, err := e.nc.Request(subject, data, 10*time.Second)
	if err != nil {
		t.Fatalf("%s %s: %v", subject, data, err)
	}
	return msg.Header.Get("Nats-Service-Error-Code"), msg.Data
}

// list calls kanade.results.list and decodes a successful reply.
func (e *env) list(t testing.TB, p any) []Row {
	t.Helper()
	code, body := e.call(t, "kanade.results.list", p)
	if code != "" {
		t.Fatalf("list %+v: %s %s", p, code, body)
	}
	var rows []Row
	if err := json.Unmarshal(body, &rows); err != nil {
		t.Fatalf("list reply %s: %v", body, err)
	}
	return rows
}

func ids(rows []Row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ResultID
	}
	return out
}
