package gateway

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/agents"
	"github.com/kanade-go/kanade/store"
)

// GET /api/agents without a limit over 20,000 agents at the default
// max_payload (1 MiB): the whole array streamed from pages. Figures: the
// response's bytes, the pages (a NATS request each), and the heap the
// process allocated per request (services, NATS and gateway together;
// the gateway holds one page at a time).
func BenchmarkAgentsWholeFleetHTTP(b *testing.B) {
	const fleet = 20000
	n := nodetest.Start(b)
	ctx := context.Background()
	now := time.Now().UTC()
	err := n.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		for i := range fleet {
			at := store.FormatTime(now.Add(-time.Duration(i) * time.Second))
			if _, err := tx.Exec(`INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, updated_at, last_logon_user)
				VALUES (?,?,?,?,?,?,?)`, fmt.Sprintf("PC%05d", i), fmt.Sprintf("host-%05d.corp.example", i), "windows", "0.44.1", at, at, "CORP\\user"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	nc := n.Conn(b)
	ag, err := agents.Start(ctx, agents.Options{Conn: nc, DB: n.DB, Logger: n.Logger})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ag.Stop() })
	g := startGateway(b, n, Options{})
	if err := g.RefreshRoutes(ctx); err != nil {
		b.Fatal(err)
	}
	// A plain subscriber sees a copy of every page request.
	var requests atomic.Int64
	spyConn := n.Conn(b)
	spy, err := spyConn.Subscribe("kanade.agents.list", func(*nats.Msg) { requests.Add(1) })
	if err != nil {
		b.Fatal(err)
	}
	defer spy.Unsubscribe()
	var bytes int64
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	b.ResetTimer()
	for range b.N {
		resp, err := http.Get(g.URL() + "/api/agents")
		if err != nil {
			b.Fatal(err)
		}
		k, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("%s: %v", resp.Status, err)
		}
		bytes = k
	}
	b.StopTimer()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&m1)
	spyConn.Flush()
	b.ReportMetric(float64(bytes)/(1<<20), "MB/resp")
	b.ReportMetric(float64(requests.Load())/float64(b.N), "pages")
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/float64(b.N)/(1<<20), "alloc-MB/op")
	b.ReportMetric(elapsed.Seconds()/float64(b.N)*1000, "ms/resp")
}
