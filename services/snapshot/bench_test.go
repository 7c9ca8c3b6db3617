package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/store"
)

// BenchmarkSnapshot projects N results (KANADE_BENCH_SNAPSHOT_N, default
// 50,000; about 600 bytes of varied stdout each, compressed as by default), then times
// a snapshot (VACUUM INTO, zstd, object store) and its restore, and prints
// the database, snapshot and object sizes.
//
//	go test -run '^$' -bench Snapshot -benchtime 1x ./services/snapshot
func BenchmarkSnapshot(b *testing.B) {
	n := 50000
	if v, err := strconv.Atoi(os.Getenv("KANADE_BENCH_SNAPSHOT_N")); err == nil && v > 0 {
		n = v
	}
	node := nodetest.Start(b)
	js := node.JetStream(b)
	feedB(b, js, n)
	p := startProjectorB(b, node)
	for {
		st, err := p.Status(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if st.Streams[0].LastApplied >= uint64(n) && st.CaughtUp {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	s, err := Start(context.Background(), Options{Conn: node.Conn(b), DB: node.DB, NodeName: "bench", Logger: node.Logger,
		Projection: p, Interval: -1, NoService: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	node.DB.W.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	st, _ := os.Stat(node.DB.Path)
	t0 := time.Now()
	in, err := s.Take(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	took := time.Since(t0)
	path := filepath.Join(b.TempDir(), "kanade.db")
	t0 = time.Now()
	got, err := RestoreIfEmpty(context.Background(), js, path, nil, node.Logger)
	if err != nil || got == nil {
		b.Fatal(err)
	}
	restore := time.Since(t0)
	db, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var rows int
	db.R.QueryRow(`SELECT count(*) FROM execution_results`).Scan(&rows)
	db.Close()
	if rows != n {
		b.Fatalf("restored %d rows, want %d", rows, n)
	}
	fmt.Printf("%d results: kanade.db %.1f MB, copy %.1f MB, snapshot object %.1f MB; snapshot %.2f s, restore %.2f s\n",
		n, float64(st.Size())/1e6, float64(in.DBBytes)/1e6, float64(in.Bytes)/1e6, took.Seconds(), restore.Seconds())
}
