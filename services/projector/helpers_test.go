package projector

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// env is a test node with a projector on it.
type env struct {
	t  *testing.T
	n  *nodetest.Node
	js jetstream.JetStream
	p  *Projector
}

func newEnv(t *testing.T, o Options) *env {
	t.Helper()
	n := nodetest.Start(t)
	e := &env{t: t, n: n, js: n.JetStream(t)}
	e.start(n.DB, o)
	return e
}

// start starts a projector on db; it is stopped at the end of the test.
func (e *env) start(db *store.DB, o Options) *Projector {
	e.t.Helper()
	o.Conn, o.DB, o.Logger = e.n.Conn(e.t), db, e.n.Logger
	if o.NodeName == "" {
		o.NodeName = "test"
	}
	p, err := Start(context.Background(), o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { p.Stop() })
	e.p = p
	return p
}

func (e *env) publish(subject string, v any) uint64 {
	e.t.Helper()
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			e.t.Fatal(err)
		}
	}
	ack, err := e.js.Publish(context.Background(), subject, b)
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

func (e *env) result(r wire.ExecResult) uint64 { return e.publish(wire.Results(r.RequestID), r) }

func (e *env) started(s wire.EventStarted) uint64 {
	return e.publish(wire.Started(s.ExecID, s.PCID), s)
}

func (e *env) execution(r streams.ExecutionRecord) uint64 {
	return e.publish(streams.ExecutionSubject(r.ExecID), r)
}

// settle waits until p has applied every message now in the streams.
func (e *env) settle(p *Projector) {
	e.t.Helper()
	want := map[string]uint64{}
	for _, s := range p.streams {
		str, err := e.js.Stream(context.Background(), s.name)
		if err != nil {
			e.t.Fatal(err)
		}
		want[s.name] = str.CachedInfo().State.LastSeq
	}
	waitFor(e.t, "projection to catch up", func() bool {
		for _, s := range p.streams {
			if s.applied.Load() < want[s.name] {
				return false
			}
		}
		return true
	})
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitUntil(t, what, 30*time.Second, cond)
}

func waitUntil(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// row is an execution_results row, every column as text.
type row map[string]string

func query(t testing.TB, db *store.DB, q string, args ...any) []row {
	t.Helper()
	rows, err := db.R.Query(q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []row
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		outs := make([]store.Output, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
			if cols[i] == "stdout" || cols[i] == "stderr" {
				// Compressed or plain, compared as text.
				ptrs[i] = &outs[i]
			}
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		r := row{}
		for i, c := range cols {
			if c == "stdout" || c == "stderr" {
				vals[i] = sql.NullString{String: string(outs[i]), Valid: true}
			}
			if vals[i].Valid {
				r[c] = vals[i].String
			} else {
				r[c] = "NULL"
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func one(t testing.TB, db *store.DB, q string, args ...any) row {
	t.Helper()
	rs := query(t, db, q, args...)
	if len(rs) != 1 {
		t.Fatalf("%s %v: %d rows, want 1", q, args, len(rs))
	}
	return rs[0]
}

func resultRow(t testing.TB, db *store.DB, id string) row {
	t.Helper()
	return one(t, db, `SELECT * FROM execution_results WHERE result_id = ?`, id)
}

func execRow(t testing.TB, db *store.DB, id string) row {
	t.Helper()
	return one(t, db, `SELECT * FROM executions WHERE exec_id = ?`, id)
}

func count(t testing.TB, db *store.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.R.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// check compares fields of a row.
func check(t testing.TB, r row, want map[string]string) {
	t.Helper()
	var bad []string
	for k, v := range want {
		if r[k] != v {
			bad = append(bad, fmt.Sprintf("%s = %q, want %q", k, r[k], v))
		}
	}
	if len(bad) > 0 {
		t.Errorf("row %s: %s", r["result_id"]+r["exec_id"], strings.Join(bad, "; "))
	}
}

func ptr[T any](v T) *T { return &v }

var t0 = time.Date(2026, 5, 16, 0, 0, 0, 0, time.UTC)

func ft(t time.Time) string { return store.FormatTime(t) }
