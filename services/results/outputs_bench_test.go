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

	"github.com/kanade-go/kanade/nodetest"
)

// BenchmarkOutputs measures list and detail over NATS with 1 KiB and
// 256 KiB outputs, side by side with the list as it was before previews
// (every row's whole output read and encoded: "full-list"), which is
// measured in process because its reply for 50 rows of 256 KiB (13 MiB)
// cannot be sent over NATS at all. Reports p50/p99 and the reply size.
//
//	go test ./services/results -run '^$' -bench Outputs -benchtime 300x
func BenchmarkOutputs(b *testing.B) {
	for _, size := range []struct {
		name  string
		bytes int
		rows  int
	}{{"1KiB", 1 << 10, 2000}, {"256KiB", 256 << 10, 200}} {
		b.Run(size.name, func(b *testing.B) {
			n := nodetest.Start(b)
			svc, err := Start(context.Background(), Options{Conn: n.Conn(b), DB: n.DB, Logger: n.Logger})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { svc.Stop() })
			nc := n.Conn(b)
			line := "the quick brown fox jumps over the lazy dog 0123456789\n"
			out := strings.Repeat(line, size.bytes/len(line)+1)[:size.bytes]
			recs := make([]rec, size.rows)
			for i := range recs {
				recs[i] = rec{id: fmt.Sprintf("r%06d", i), pc: fmt.Sprintf("PC%04d", i%500), exit: code(0), stdout: out,
					started: benchAnchor.Add(time.Duration(i) * time.Second), finished: benchAnchor}
			}
			for lo := 0; lo < len(recs); lo += 100 {
				insert(b, n.DB, recs[lo:min(lo+100, len(recs))]...)
			}
			overNATS := func(subject string, body func(i int) string) func(b *testing.B) {
				return func(b *testing.B) {
					var size int
					measure(b, func(i int) { _, m := callBench(b, nc, subject, body(i)); size = len(m) })
					b.ReportMetric(float64(size), "reply-bytes")
				}
			}
			b.Run("list-50", overNATS("kanade.results.list", func(int) string { return `{}` }))
			b.Run("list-1000", overNATS("kanade.results.list", func(int) string { return `{"limit":1000}` }))
			b.Run("detail", overNATS("kanade.results.detail", func(i int) string { return fmt.Sprintf(`{"result_id":"r%06d"}`, i%size.rows) }))
			// In process, as full-list-50 is measured: query and encoding.
			b.Run("list-50-in-process", func(b *testing.B) {
				var size int
				measure(b, func(int) {
					rows, err := List(context.Background(), n.DB, Params{})
					if err != nil {
						b.Fatal(err)
					}
					body, err := fitList(rows, int(nc.MaxPayload())-replyMargin)
					if err != nil {
						b.Fatal(err)
					}
					size = len(body)
				})
				b.ReportMetric(float64(size), "reply-bytes")
			})
			b.Run("full-list-50", func(b *testing.B) {
				var size int
				measure(b, func(int) { size = len(fullList(b, n.DB.R, 50)) })
				b.ReportMetric(float64(size), "reply-bytes")
				fits := 0.0
				if size <= int(nc.MaxPayload()) {
					fits = 1
				}
				b.ReportMetric(fits, "fits-max-payload")
			})
		})
	}
}

// measure runs call b.N times and reports p50 and p99.
func measure(b *testing.B, call func(i int)) {
	lat := make([]time.Duration, 0, b.N)
	for i := 0; b.Loop(); i++ {
		t := time.Now()
		call(i)
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
}

// fullList is the list as it was before previews: the newest rows with
// their whole outputs, JSON-encoded.
func fullList(b *testing.B, r *sql.DB, limit int) []byte {
	type oldRow struct {
		ResultID, RequestID string
		ExecID              *string
		PCID                string
		ExitCode            *int64
		Stdout, Stderr      string
		StartedAt           *string
		FinishedAt          *string
		JobID, Version      *string
	}
	rows, err := r.Query(`SELECT result_id, request_id, exec_id, pc_id, exit_code, stdout, stderr, started_at, finished_at, job_id, version
		FROM execution_results ORDER BY started_at DESC, result_id DESC LIMIT ?`, limit)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var out []oldRow
	for rows.Next() {
		var o oldRow
		var exec, started, finished, job, version sql.NullString
		var exit sql.NullInt64
		if err := rows.Scan(&o.ResultID, &o.RequestID, &exec, &o.PCID, &exit, &o.Stdout, &o.Stderr, &started, &finished, &job, &version); err != nil {
			b.Fatal(err)
		}
		o.ExecID, o.JobID, o.Version, o.StartedAt, o.FinishedAt, o.ExitCode = nullString(exec), nullString(job), nullString(version),
			nullString(started), nullString(finished), nullInt(exit)
		out = append(out, o)
	}
	body, err := json.Marshal(out)
	if err != nil {
		b.Fatal(err)
	}
	return body
}
