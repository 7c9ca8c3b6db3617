package gateway

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/services/results"
	"github.com/kanade-go/kanade/store"
)

// benchRows is how many results the benchmark store holds.
const benchRows = 10000

// benchSetup starts a node with benchRows results, the real results
// service over them, and a gateway. It returns a NATS connection of its own (a direct
// client), the gateway's URL, an HTTP client and one result id.
func benchSetup(b *testing.B) (*nats.Conn, string, *http.Client, string) {
	b.Helper()
	n := nodetest.Start(b)
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var someID string
	err := n.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		st, err := tx.Prepare(`INSERT INTO execution_results (result_id, request_id, exec_id, pc_id, exit_code, stdout, stderr, started_at, finished_at, recorded_at, job_id, version)
			VALUES (?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, '1')`)
		if err != nil {
			return err
		}
		defer st.Close()
		for i := range benchRows {
			id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
			if i == benchRows/2 {
				someID = id
			}
			start := base.Add(time.Duration(i) * time.Second)
			if _, err := st.Exec(id, "req-"+id, fmt.Sprintf("exec-%d", i/100), fmt.Sprintf("PC%04d", i%500), i%7,
				fmt.Sprintf("line one of the output of run %d\nline two\n", i),
				store.FormatTime(start), store.FormatTime(start.Add(3*time.Second)), store.FormatTime(start), fmt.Sprintf("job-%d", i%20)); err != nil {
				return err
			}
		}
		// The distinct-value tables, as the projector keeps them.
		for _, q := range []string{
			`INSERT OR IGNORE INTO result_pc_ids SELECT DISTINCT pc_id FROM execution_results`,
			`INSERT OR IGNORE INTO result_job_ids SELECT DISTINCT job_id FROM execution_results WHERE job_id IS NOT NULL`,
		} {
			if _, err := tx.Exec(q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := results.Start(ctx, results.Options{Conn: n.Conn(b), DB: n.DB, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { svc.Stop() })
	// The access log is formatted as in production, then discarded.
	g, err := Start(Options{Conn: n.Conn(b), Addr: "127.0.0.1:0", Logger: quiet, Dashboard: testDist})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Shutdown(context.Background()) })
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	return n.Conn(b), g.URL(), hc, someID
}

func httpGet(hc *http.Client, url string) ([]byte, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return body, nil
}

func pct(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// BenchmarkGatewayLatency sends the same request over NATS directly and
// over HTTP through the gateway, alternating, so both see the same
// machine; each iteration is one of each. Run with -benchtime=3000x.
func BenchmarkGatewayLatency(b *testing.B) {
	nc, url, hc, id := benchSetup(b)
	for _, c := range []struct{ name, subject, body, path string }{
		{"detail", "kanade.results.detail", `{"result_id":"` + id + `"}`, "/api/results/" + id},
		{"list", "kanade.results.list", `{}`, "/api/results"},
	} {
		b.Run(c.name, func(b *testing.B) {
			// Same answer both ways, and warm connections and caches.
			direct, err := nc.Request(c.subject, []byte(c.body), 10*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			viaHTTP, err := httpGet(hc, url+c.path)
			if err != nil {
				b.Fatal(err)
			}
			if string(direct.Data) != string(viaHTTP) {
				b.Fatalf("HTTP body differs from the NATS reply:\n%s\n%s", viaHTTP, direct.Data)
			}
			natsLat := make([]time.Duration, 0, b.N)
			httpLat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if _, err := nc.Request(c.subject, []byte(c.body), 10*time.Second); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, err := httpGet(hc, url+c.path); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				natsLat = append(natsLat, t1.Sub(t0))
				httpLat = append(httpLat, t2.Sub(t1))
			}
			b.StopTimer()
			n50, n99 := pct(natsLat, 0.50), pct(natsLat, 0.99)
			h50, h99 := pct(httpLat, 0.50), pct(httpLat, 0.99)
			us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
			b.ReportMetric(us(n50), "nats-p50-µs")
			b.ReportMetric(us(h50), "http-p50-µs")
			b.ReportMetric(us(h50-n50), "added-p50-µs")
			b.ReportMetric(float64(h50)/float64(n50), "p50-ratio")
			b.ReportMetric(0, "ns/op")
			if b.N == 1 {
				return // the framework's probe run
			}
			fmt.Printf("%-6s n=%-6d NATS p50 %7.0fµs p99 %7.0fµs | HTTP p50 %7.0fµs p99 %7.0fµs | HTTP adds %5.0fµs at p50, ratio %.2f (p99 ratio %.2f)\n",
				c.name, b.N, us(n50), us(n99), us(h50), us(h99), us(h50-n50), float64(h50)/float64(n50), float64(h99)/float64(n99))
		})
	}
}

// BenchmarkGatewayThroughput has 16 clients share b.N requests, first
// over NATS directly, then over HTTP through the gateway, so the gateway's
// share is visible: results detail (the real service and SQLite), and a
// constant reply (the gateway's own ceiling, no SQLite). Run with
// -benchtime=20000x.
func BenchmarkGatewayThroughput(b *testing.B) {
	nc, url, hc, id := benchSetup(b)
	row, err := nc.Request("kanade.results.detail", []byte(`{"result_id":"`+id+`"}`), 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	constant := row.Data
	svc, err := api.Start(nc, api.Service{Name: "benchconst", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Endpoints: []api.Endpoint{{
		Name: "get", Subject: "kanade.benchconst.get", HTTP: "GET /api/benchconst/{id}", Tier: api.TierViewer,
		Handler: func(context.Context, api.Request) (any, error) { return constant, nil },
	}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { svc.Stop() })
	for _, c := range []struct{ name, subject, path string }{
		{"results-detail", "kanade.results.detail", "/api/results/" + id},
		{"constant", "kanade.benchconst.get", "/api/benchconst/" + id},
	} {
		b.Run(c.name, func(b *testing.B) {
			body := []byte(`{"id":"` + id + `","result_id":"` + id + `"}`)
			if c.name == "results-detail" {
				body = []byte(`{"result_id":"` + id + `"}`)
			}
			viaNATS := func() error { _, err := nc.Request(c.subject, body, 10*time.Second); return err }
			viaHTTP := func() error { _, err := httpGet(hc, url+c.path); return err }
			if err := viaNATS(); err != nil {
				b.Fatal(err)
			}
			if err := viaHTTP(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			natsRPS, natsErrs, natsErr := concurrently(b.N, viaNATS)
			httpRPS, httpErrs, httpErr := concurrently(b.N, viaHTTP)
			b.StopTimer()
			b.ReportMetric(natsRPS, "nats-req/s")
			b.ReportMetric(httpRPS, "http-req/s")
			b.ReportMetric(float64(httpErrs), "http-errors")
			b.ReportMetric(0, "ns/op")
			if b.N == 1 {
				return
			}
			fmt.Printf("%-14s 16 clients, %d requests each way: NATS %6.0f req/s (%d errors %v) | HTTP %6.0f req/s (%d errors %v) | HTTP/NATS %.2f\n",
				c.name, b.N, natsRPS, natsErrs, natsErr, httpRPS, httpErrs, httpErr, httpRPS/natsRPS)
		})
	}
}

// concurrently has 16 clients share n calls; it returns calls per second,
// the number that failed and the first failure.
func concurrently(n int, call func() error) (float64, int64, any) {
	const clients = 16
	var next, errs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if err := call(); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds(), errs.Load(), firstErr.Load()
}
