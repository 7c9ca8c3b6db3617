package health_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/health"
	"github.com/kanade-go/kanade/store"
)

// BenchmarkFleet24h times the rollup's 24 h counts (uncached: a new
// Checker per call) over KANADE_BENCH_HEALTH_N results in the window
// (default 200,000), 1 KiB of stdout each.
func BenchmarkFleet24h(b *testing.B) {
	n := 200000
	if v, err := strconv.Atoi(os.Getenv("KANADE_BENCH_HEALTH_N")); err == nil && v > 0 {
		n = v
	}
	db := nodetest.OpenStore(b, b.TempDir()+"/kanade.db")
	ctx := context.Background()
	now := time.Now().UTC()
	out := string(make([]byte, 1024))
	for done := 0; done < n; {
		tx, err := db.W.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < 5000 && done < n; i, done = i+1, done+1 {
			at := store.FormatTime(now.Add(-time.Duration(done%86000) * time.Second))
			if _, err := tx.Exec(`INSERT INTO execution_results (result_id, request_id, pc_id, exit_code, stdout, started_at, finished_at, recorded_at, job_id)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'bench')`, uuid.NewString(), uuid.NewString(), fmt.Sprintf("PC%05d", done%5000), done%7, out, at, at, at); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		c := &health.Checker{DB: db, JS: nil}
		f := c.Recent(ctx, now)
		if f.Total != int64(n) {
			b.Fatalf("total %d, want %d", f.Total, n)
		}
	}
}
