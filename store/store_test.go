package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func open(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "kanade.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestTimeOrder(t *testing.T) {
	// Upstream once mixed "…:05Z" with "…:05.1Z"; as text '.' sorts before
	// 'Z' and the order broke. The stored form is fixed-width.
	a, _ := time.Parse(time.RFC3339Nano, "2026-05-16T00:00:05Z")
	b, _ := time.Parse(time.RFC3339Nano, "2026-05-16T00:00:05.1Z")
	c, _ := time.Parse(time.RFC3339Nano, "2026-05-16T00:00:06Z")
	fa, fb, fc := FormatTime(a), FormatTime(b), FormatTime(c)
	if !(fa < fb && fb < fc) {
		t.Fatalf("text order broken: %s %s %s", fa, fb, fc)
	}
	if len(fa) != len(fb) || len(fb) != len(fc) {
		t.Fatal("not fixed width")
	}
	// And SQLite orders them the same way.
	db := open(t)
	ctx := context.Background()
	for i, ts := range []string{fc, fa, fb} {
		_, err := db.W.ExecContext(ctx, `INSERT INTO execution_results (result_id, request_id, pc_id, started_at, recorded_at) VALUES (?, 'r', 'PC1', ?, ?)`,
			string(rune('x'+i)), ts, ts)
		if err != nil {
			t.Fatal(err)
		}
	}
	rows, err := db.R.QueryContext(ctx, `SELECT started_at FROM execution_results ORDER BY started_at DESC`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		got = append(got, s)
	}
	rows.Close()
	if strings.Join(got, ",") != strings.Join([]string{fc, fb, fa}, ",") {
		t.Fatalf("order: %v", got)
	}
	back, err := ParseTime(fb)
	if err != nil || !back.Equal(b) {
		t.Fatalf("parse back: %v %v", back, err)
	}
	if s := APITime(sql.NullString{String: fb, Valid: true}); s == nil || *s != "2026-05-16T00:00:05.1Z" {
		t.Fatalf("APITime: %v", s)
	}
}

func TestReadPoolIsReadOnly(t *testing.T) {
	db := open(t)
	_, err := db.R.Exec(`INSERT INTO agents (pc_id, last_heartbeat) VALUES ('PC1', 'x')`)
	if err == nil {
		t.Fatal("read pool accepted a write")
	}
	if err := db.WriteTx(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO agents (pc_id, last_heartbeat) VALUES ('PC1', 'x')`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.R.QueryRow(`SELECT count(*) FROM agents`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("read after write: %d %v", n, err)
	}
}

func TestReopenKeepsDataAndMigrationsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kanade.db")
	ctx := context.Background()
	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.W.Exec(`INSERT INTO agents (pc_id, last_heartbeat) VALUES ('PC1', 'x')`)
	db.Close()
	db, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, m int
	db.R.QueryRow(`SELECT count(*) FROM agents`).Scan(&n)
	db.R.QueryRow(`SELECT count(*) FROM schema_migrations WHERE version = 1`).Scan(&m)
	if n != 1 || m != 1 {
		t.Fatalf("agents %d, migration rows %d", n, m)
	}
	var mode string
	db.R.QueryRow(`PRAGMA journal_mode`).Scan(&mode)
	if mode != "wal" {
		t.Fatalf("journal_mode %s", mode)
	}
}

func TestRegexp(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	db.W.ExecContext(ctx, `INSERT INTO execution_results (result_id, request_id, pc_id, job_id, recorded_at) VALUES
		('a', 'r', 'PC001', 'inv', 'x'), ('b', 'r', 'PC0010', NULL, 'x'), ('c', 'r', 'PC2', 'inv', 'x')`)
	count := func(q string, args ...any) int {
		var n int
		if err := db.R.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM execution_results WHERE pc_id REGEXP ?`, "PC001"); n != 2 {
		t.Errorf("substring: %d", n)
	}
	if n := count(`SELECT count(*) FROM execution_results WHERE pc_id REGEXP ?`, "^PC001$"); n != 1 {
		t.Errorf("anchored: %d", n)
	}
	// NULL job_id matches as "": ^inv drops it, ^$ keeps only it.
	if n := count(`SELECT count(*) FROM execution_results WHERE job_id REGEXP ?`, "^inv"); n != 2 {
		t.Errorf("null dropped: %d", n)
	}
	if n := count(`SELECT count(*) FROM execution_results WHERE job_id REGEXP ?`, "^$"); n != 1 {
		t.Errorf("null as empty: %d", n)
	}
	var n int
	err := db.R.QueryRowContext(ctx, `SELECT count(*) FROM execution_results WHERE pc_id REGEXP ?`, "(").Scan(&n)
	if err == nil || !strings.Contains(err.Error(), "invalid regex `(`") {
		t.Errorf("bad pattern: %v", err)
	}
}
