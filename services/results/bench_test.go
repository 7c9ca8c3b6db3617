package results

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/store"
)

// The benchmark table: 1,000,000 rows over 30 days before benchAnchor,
// 5,000 pc_ids, 40 job_ids, 1 KiB of stdout each; 1% of rows print
// "ERROR code=NNN". Built once and kept in the temp dir (about 1.5 GB).
const (
	benchRows = 1_000_000
	benchPCs  = 5000
	benchJobs = 40
	benchSpan = 30 * 24 * time.Hour
)

var benchAnchor = time.Date(2026, 5, 16, 0, 0, 0, 0, time.UTC)

func benchDB(b *testing.B) string {
	path := os.Getenv("KANADE_BENCH_DB")
	if path == "" {
		path = filepath.Join(os.TempDir(), "kanade-results-bench-1m-v1.db")
	}
	if _, err := os.Stat(path + ".done"); err == nil {
		return path
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
	start := time.Now()
	db, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(42, 42))
	filler := strings.Repeat("the quick brown fox jumps over the lazy dog; ", 24)
	const batch = 10_000
	step := benchSpan / benchRows
	for lo := 0; lo < benchRows; lo += batch {
		err := db.WriteTx(context.Background(), func(tx *sql.Tx) error {
			ins, err := tx.Prepare(`INSERT INTO execution_results (result_id, request_id, exec_id, pc_id, exit_code, stdout, stderr,
				started_at, finished_at, recorded_at, job_id, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '1.0.0')`)
			if err != nil {
				return err
			}
			defer ins.Close()
			for i := lo; i < lo+batch; i++ {
				started := benchAnchor.Add(-benchSpan + time.Duration(i)*step)
				exec := fmt.Sprintf("%08x-exec-%05d", rng.Uint32(), i/200)
				stdout := fmt.Sprintf("run %d line %08x\n%s", i, rng.Uint32(), filler)[:1024]
				var exit any = 0
				if rng.IntN(100) == 0 {
					stdout = fmt.Sprintf("ERROR code=%03d\n%s", rng.IntN(1000), stdout)[:1024]
					exit = 1
				}
				finished := any(store.FormatTime(started.Add(time.Minute)))
				if i > benchRows-200 {
					exit, finished = nil, nil
				}
				if _, err := ins.Exec(fmt.Sprintf("%032x", rng.Uint64()), fmt.Sprintf("req-%d", i/200), exec,
					fmt.Sprintf("PC%04d", rng.IntN(benchPCs)), exit, stdout, "", store.FormatTime(started), finished,
					store.FormatTime(started), fmt.Sprintf("job-%02d", (i/200)%benchJobs)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, q := range []string{
		`INSERT OR IGNORE INTO result_pc_ids SELECT DISTINCT pc_id FROM execution_results`,
		`INSERT OR IGNORE INTO result_job_ids SELECT DISTINCT job_id FROM execution_results WHERE job_id IS NOT NULL`,
		`PRAGMA wal_checkpoint(TRUNCATE)`,
	} {
		if _, err := db.W.Exec(q); err != nil {
			b.Fatal(err)
		}
	}
	fmt.Printf("built %s: %d rows in %v\n", path, benchRows, time.Since(start).Round(time.Second))
	if err := os.WriteFile(path+".done", nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkResults1M measures each query over NATS against the 1M-row
// table: p50 and p99 of the round trip, and checks that the filtered
// answers equal a plain per-row REGEXP scan of the whole table.
//
//	go test ./services/results -run '^$' -bench Results1M -benchtime 200x
func BenchmarkResults1M(b *testing.B) {
	path := benchDB(b)
	n := nodetest.Start(b)
	db := nodetest.OpenStore(b, path)
	svc, err := Start(context.Background(), Options{Conn: n.Conn(b), DB: db, Logger: n.Logger})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { svc.Stop() })
	nc := n.Conn(b)
	since := benchAnchor.Add(-24 * time.Hour).Format(time.RFC3339)

	var someIDs []string
	rows, err := db.R.Query(`SELECT result_id FROM execution_results WHERE rowid % 997 = 0`)
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		someIDs = append(someIDs, id)
	}
	rows.Close()

	// The answer of the contract read literally: every row tested, no index.
	reference := func(where string, args ...any) []string {
		q := `SELECT result_id FROM execution_results NOT INDEXED WHERE ` + where + ` ORDER BY started_at DESC, result_id DESC LIMIT 50`
		rows, err := db.R.Query(q, args...)
		if err != nil {
			b.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id string
			rows.Scan(&id)
			out = append(out, id)
		}
		return out
	}

	for _, c := range []struct {
		name    string
		subject string
		body    func(i int) string
		check   func() []string // the reference answer, nil = none
	}{
		{"list-default", "kanade.results.list", func(int) string { return `{}` }, nil},
		{"detail", "kanade.results.detail", func(i int) string { return `{"result_id":"` + someIDs[i%len(someIDs)] + `"}` }, nil},
		{"pc-exact-^PC0042$", "kanade.results.list", func(int) string { return `{"pc_id":"^PC0042$"}` },
			func() []string { return reference(`pc_id REGEXP '^PC0042$'`) }},
		{"pc-prefix-^PC004", "kanade.results.list", func(int) string { return `{"pc_id":"^PC004"}` },
			func() []string { return reference(`pc_id REGEXP '^PC004'`) }},
		{"pc-unanchored-42", "kanade.results.list", func(int) string { return `{"pc_id":"42"}` },
			func() []string { return reference(`pc_id REGEXP '42'`) }},
		{"pc-unanchored-4[0-9]7$", "kanade.results.list", func(int) string { return `{"pc_id":"4[0-9]7$"}` },
			func() []string { return reference(`pc_id REGEXP '4[0-9]7$'`) }},
		{"job-exact-^job-07$", "kanade.results.list", func(int) string { return `{"job_id":"^job-07$"}` },
			func() []string { return reference(`job_id REGEXP '^job-07$'`) }},
		{"job-unanchored-7", "kanade.results.list", func(int) string { return `{"job_id":"7"}` },
			func() []string { return reference(`job_id REGEXP '7'`) }},
		{"pc+job-regex", "kanade.results.list", func(int) string { return `{"pc_id":"^PC00[0-4]","job_id":"1$"}` },
			func() []string { return reference(`pc_id REGEXP '^PC00[0-4]' AND job_id REGEXP '1$'`) }},
		{"stdout-since-24h", "kanade.results.list", func(int) string { return `{"stdout":"ERROR code=4[0-9]7","since":"` + since + `"}` },
			func() []string {
				return reference(`stdout REGEXP 'ERROR code=4[0-9]7' AND started_at >= ?`, store.FormatTime(benchAnchor.Add(-24*time.Hour)))
			}},
		{"stdout-since-7d", "kanade.results.list", func(int) string {
			return `{"stdout":"ERROR code=4[0-9]7","since":"` + benchAnchor.Add(-7*24*time.Hour).Format(time.RFC3339) + `"}`
		}, nil},
		{"stdout-since-24h-case-insensitive", "kanade.results.list", func(int) string { return `{"stdout":"(?i)error code=4[0-9]7","since":"` + since + `"}` }, nil},
		{"status-failure", "kanade.results.list", func(int) string { return `{"status":"failure"}` },
			func() []string { return reference(`exit_code <> 0`) }},
	} {
		if c.check != nil {
			var got []Row
			_, body := callBench(b, nc, c.subject, c.body(0))
			if err := json.Unmarshal(body, &got); err != nil {
				b.Fatalf("%s: %s", c.name, body)
			}
			if want := c.check(); !slices.Equal(ids(got), want) || len(want) == 0 {
				b.Fatalf("%s: %d rows differ from the full scan's %d", c.name, len(got), len(want))
			}
		}
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			cpu := cpuTime()
			for i := 0; b.Loop(); i++ {
				t := time.Now()
				callBench(b, nc, c.subject, c.body(i))
				lat = append(lat, time.Since(t))
			}
			cpu = cpuTime() - cpu
			slices.Sort(lat)
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
			// CPU of the whole process (server, client, service) per call:
			// what the query costs whatever else the machine is doing.
			b.ReportMetric(ms(cpu/time.Duration(len(lat))), "cpu-ms/op")
		})
	}

	// Side by side: the same exact pc_id answer from a per-row REGEXP over
	// every row, as a plain translation of the filter into SQL would run.
	b.Run("naive-full-scan-^PC0042$", func(b *testing.B) {
		for b.Loop() {
			reference(`pc_id REGEXP '^PC0042$'`)
		}
	})
	// A search over every row with no since runs into the deadline and is
	// interrupted: how long until the 503.
	b.Run("stdout-all-rows-deadline-1s", func(b *testing.B) {
		for b.Loop() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			t := time.Now()
			_, err := List(ctx, db, Params{Stdout: "no such text anywhere"})
			cancel()
			if err == nil || !strings.Contains(err.Error(), "narrow `since`") {
				b.Fatalf("want a 503, got %v", err)
			}
			b.ReportMetric(ms(time.Since(t)), "ms-to-503")
		}
	})
}

func callBench(b *testing.B, nc *nats.Conn, subject, body string) (string, []byte) {
	m, err := nc.Request(subject, []byte(body), 30*time.Second)
	if err != nil {
		b.Fatalf("%s %s: %v", subject, body, err)
	}
	if c := m.Header.Get("Nats-Service-Error-Code"); c != "" {
		b.Fatalf("%s %s: %s %s", subject, body, c, m.Data)
	}
	return "", m.Data
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// cpuTime is the CPU time this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
