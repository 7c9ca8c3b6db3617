package projector

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// Result ids in the benchmarks are UUIDs spread like the agents' v4 ones
// (random order into the primary key), but reproducible.
func benchID(i int) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(strconv.Itoa(i))).String()
}

func benchStdout(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = 'a' + byte(i%26)
	}
	return out
}

func benchRounds() int {
	if n, err := strconv.Atoi(os.Getenv("KANADE_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// BenchmarkProjection publishes 200,000 ExecResults with 1 KiB of stdout
// into RESULTS, then, side by side in each round: the ceiling (the same
// rows INSERTed in batches of 1000 per transaction into the same table and
// indexes, no NATS), the projector replaying the stream into an empty
// database, and one message per transaction (upstream's design: consume
// one message, apply it in its own transaction, ack) on the first 20,000.
//
//	go test -run '^$' -bench Projection -benchtime 1x ./services/projector
func BenchmarkProjection(b *testing.B) {
	const total, perExec, perTxN, perTxFullN = 200_000, 1000, 20_000, 5_000
	n := nodetest.Start(b)
	js, err := jetstream.New(n.Conn(b), jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	publishResultsWith(b, js, total, perExec, 1024, benchID)
	fmt.Printf("published %d results with 1 KiB stdout in %.1f s\n", total, time.Since(start).Seconds())

	var ceil, proj, one, full []float64
	var heap []uint64
	for round := range benchRounds() {
		c := benchCeiling(b, total, perExec)
		p, h := benchProjector(b, n, js, total, fmt.Sprintf("bench%d", round))
		o := benchOnePerTx(b, n, js, perTxN, fmt.Sprintf("one%d", round), false)
		f := benchOnePerTx(b, n, js, perTxFullN, fmt.Sprintf("full%d", round), true)
		ceil, proj, one, full, heap = append(ceil, c), append(proj, p), append(one, o), append(full, f), append(heap, h)
		fmt.Printf("round %d: ceiling %.0f rows/s, projector %.0f results/s (%.0f%% of ceiling), one per transaction %.0f results/s (projector %.1fx), one per transaction with synchronous=FULL %.0f results/s (projector %.1fx), max heap in use %d MiB\n",
			round+1, c, p, 100*p/c, o, p/o, f, p/f, h>>20)
	}
	mc, mp, mo, mf := median(ceil), median(proj), median(one), median(full)
	fmt.Printf("median of %d rounds: ceiling %.0f rows/s, projector %.0f results/s = %.0f%% of ceiling; one per transaction %.0f results/s (projector %.1fx); one per transaction, synchronous=FULL %.0f results/s (projector %.1fx)\n",
		len(ceil), mc, mp, 100*mp/mc, mo, mp/mo, mf, mp/mf)
	b.ReportMetric(mf, "one_per_tx_full_results/s")
	b.ReportMetric(mc, "ceiling_rows/s")
	b.ReportMetric(mp, "projector_results/s")
	b.ReportMetric(mo, "one_per_tx_results/s")
	b.ReportMetric(100*mp/mc, "%_of_ceiling")
	b.ReportMetric(mp/mo, "x_one_per_tx")
}

func benchLogger(n *nodetest.Node) *slog.Logger {
	if os.Getenv("KANADE_BENCH_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return n.Logger
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func benchDB(b *testing.B) *store.DB {
	return nodetest.OpenStore(b, filepath.Join(b.TempDir(), "kanade.db"))
}

// benchCeiling inserts the benchmark's rows with nothing but batched
// INSERTs and returns rows per second.
func benchCeiling(b *testing.B, total, perExec int) float64 {
	return benchCeilingDB(b, benchDB(b), total, perExec)
}

func benchCeilingDB(b *testing.B, db *store.DB, total, perExec int) float64 {
	out := benchStdout(1024)
	rec := store.FormatTime(time.Now())
	ctx := context.Background()
	start := time.Now()
	for lo := 0; lo < total; lo += 1000 {
		err := db.WriteTx(ctx, func(tx *sql.Tx) error {
			st, err := tx.PrepareContext(ctx, sqlInsertResult)
			if err != nil {
				return err
			}
			defer st.Close()
			for i := lo; i < min(lo+1000, total); i++ {
				r := genResult(i, perExec, out, benchID)
				if _, err := st.ExecContext(ctx, r.ResultID, r.RequestID, nullStr(r.ExecID), r.PCID, r.ExitCode,
					r.Stdout, r.Stderr, store.NullTime(r.StartedAt), store.FormatTime(r.FinishedAt), rec,
					nullStr(r.ManifestID)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return float64(total) / time.Since(start).Seconds()
}

// benchProjector replays the stream into an empty database with a new
// consumer and returns results per second and the largest heap in use
// seen (the whole process: the embedded server included).
func benchProjector(b *testing.B, n *nodetest.Node, js jetstream.JetStream, total int, node string) (float64, uint64) {
	db := benchDB(b)
	var maxHeap atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > maxHeap.Load() {
				maxHeap.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	start := time.Now()
	p, err := Start(context.Background(), Options{Conn: n.Conn(b), DB: db, NodeName: node, NoService: true, Logger: benchLogger(n)})
	if err != nil {
		b.Fatal(err)
	}
	waitUntil(b, "projection", 10*time.Minute, func() bool { return p.streams[0].applied.Load() >= uint64(total) })
	el := time.Since(start)
	p.Stop()
	close(stop)
	wg.Wait()
	if got := count(b, db, `SELECT count(*) FROM execution_results`); got != total {
		b.Fatalf("%d rows, want %d", got, total)
	}
	deleteConsumers(b, js, node)
	return float64(total) / el.Seconds(), maxHeap.Load()
}

// benchOnePerTx is upstream's design: a consumer hands over one message at
// a time; each is applied in its own transaction, then acked.
func benchOnePerTx(b *testing.B, n *nodetest.Node, js jetstream.JetStream, count int, node string, full bool) float64 {
	db := benchDB(b)
	ctx := context.Background()
	if full {
		// The writer has exactly one connection, so the pragma sticks.
		if _, err := db.W.ExecContext(ctx, `PRAGMA synchronous=FULL`); err != nil {
			b.Fatal(err)
		}
	}
	p := &Projector{o: Options{DB: db, NodeName: node, Batch: 1, MaxPayload: DefaultMaxPayload}, log: n.Logger, js: js, db: db, known: newKnownValues()}
	s := &stream{p: p, name: wire.StreamResults, filter: wire.SubjectResultsAll, kind: kindResult,
		durable: "projector_" + node + "_results", log: n.Logger}
	c, err := js.CreateConsumer(ctx, s.name, s.consumerConfig(1))
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	var applied atomic.Int64
	start := time.Now()
	cc, err := c.Consume(func(m jetstream.Msg) {
		if applied.Load() >= int64(count) {
			return
		}
		if err := s.apply(s.decode(ctx, []jetstream.Msg{m})); err != nil {
			b.Error(err)
		}
		if applied.Add(1) == int64(count) {
			close(done)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	<-done
	el := time.Since(start)
	cc.Stop()
	deleteConsumers(b, js, node)
	return float64(count) / el.Seconds()
}

func deleteConsumers(b *testing.B, js jetstream.JetStream, node string) {
	for _, s := range []string{"RESULTS", "EVENTS", "EXECUTIONS"} {
		js.DeleteConsumer(context.Background(), s, "projector_"+node+"_"+strings.ToLower(map[string]string{
			"RESULTS": "results", "EVENTS": "events", "EXECUTIONS": "executions"}[s]))
	}
}

// BenchmarkRebuild1M publishes 1,000,000 results with 1 KiB of stdout, then
// runs a projector in a child process (so its memory is its own) against
// an empty database until it has replayed them all, sampling the child's
// resident memory as it goes.
//
//	go test -run '^$' -bench Rebuild1M -benchtime 1x -timeout 30m ./services/projector
func BenchmarkRebuild1M(b *testing.B) {
	total := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("KANADE_BENCH_REBUILD_N")); err == nil && v > 0 {
		total = v
	}
	n := nodetest.Start(b)
	js, err := jetstream.New(n.Conn(b), jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	publishResultsWith(b, js, total, 1000, 1024, benchID)
	fmt.Printf("published %d results with 1 KiB stdout in %.1f s\n", total, time.Since(start).Seconds())

	dbPath := filepath.Join(b.TempDir(), "rebuild.db")
	db := nodetest.OpenStore(b, dbPath)
	start = time.Now()
	cmd := startChild(b, n.URL, dbPath)
	var samples []string
	var maxRSS uint64
	next := total / 10
	for {
		off := offsetOf(b, db, wire.StreamResults)
		rss := procRSS(cmd.Process.Pid, "VmRSS")
		maxRSS = max(maxRSS, rss)
		if int(off) >= next || int(off) >= total {
			samples = append(samples, fmt.Sprintf("%d%%: %.1fs rss %d MiB", 100*int(off)/total, time.Since(start).Seconds(), rss>>10))
			next += total / 10
		}
		if int(off) >= total {
			break
		}
		if time.Since(start) > 20*time.Minute {
			b.Fatalf("rebuild stuck at %d", off)
		}
		time.Sleep(200 * time.Millisecond)
	}
	el := time.Since(start)
	hwm := procRSS(cmd.Process.Pid, "VmHWM")
	fmt.Printf("rebuild of %d results into an empty database: %.1f s (%.0f results/s); child max RSS %d MiB (VmHWM %d MiB)\n  %s\n",
		total, el.Seconds(), float64(total)/el.Seconds(), maxRSS>>10, hwm>>10, strings.Join(samples, "\n  "))
	b.ReportMetric(el.Seconds(), "rebuild_s")
	b.ReportMetric(float64(total)/el.Seconds(), "results/s")
	b.ReportMetric(float64(hwm>>10), "child_max_rss_MiB")
}

// procRSS reads a memory figure (kB) of a process from /proc.
func procRSS(pid int, field string) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				v, _ := strconv.ParseUint(f[1], 10, 64)
				return v
			}
		}
	}
	return 0
}
