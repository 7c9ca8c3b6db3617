package store

import (
	"context"
	"database/sql"
	"sync"
	"testing"
)

func TestReadStmt(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	const q = `SELECT hostname FROM agents WHERE pc_id = ?`
	a, err := db.ReadStmt(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ReadStmt(ctx, `SELECT nope FROM agents`); err == nil {
		t.Fatal("a statement that cannot prepare was returned")
	}
	// Prepared before the write, it still reads the committed row, from
	// several goroutines at once, and is the one statement every time.
	if err := db.WriteTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO agents (pc_id, hostname, last_heartbeat) VALUES ('PC1', 'host1', 'x')`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			s, err := db.ReadStmt(ctx, q)
			if err != nil {
				t.Error(err)
				return
			}
			if s != a {
				t.Error("the same query was prepared again")
			}
			var host string
			if err := s.QueryRowContext(ctx, "PC1").Scan(&host); err != nil || host != "host1" {
				t.Errorf("read %q, %v; want host1", host, err)
			}
		})
	}
	wg.Wait()
}
