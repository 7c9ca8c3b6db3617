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
	"syscall"
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

	if os.Getenv("KANADE_BENCH_ONLY") == "projector" { // for profiling
		p, h := benchProjector(b, n, js, total, "only")
		fmt.Printf("projector %.0f results/s (%.0f per CPU second), max heap in use %d MiB\n", p.wall, p.cpu, h>>20)
		return
	}
	var ceil, proj, one, full []figure
	for round := range benchRounds() {
		c := benchCeiling(b, total, perExec)
		p, h := benchProjector(b, n, js, total, fmt.Sprintf("bench%d", round))
		o := benchOnePerTx(b, n, js, perTxN, fmt.Sprintf("one%d", round), false)
		f := benchOnePerTx(b, n, js, perTxFullN, fmt.Sprintf("full%d", round), true)
		ceil, proj, one, full = append(ceil, c), append(proj, p), append(one, o), append(full, f)
		fmt.Printf("round %d (wall clock; per CPU second in brackets): ceiling %.0f rows/s [%.0f]; projector %.0f results/s [%.0f] = %.0f%% [%.0f%%] of ceiling; "+
			"one per transaction %.0f/s [%.0f] (projector %.1fx [%.1fx]); one per transaction, synchronous=FULL %.0f/s [%.0f] (projector %.1fx [%.1fx]); max heap in use %d MiB\n",
			round+1, c.wall, c.cpu, p.wall, p.cpu, 100*p.wall/c.wall, 100*p.cpu/c.cpu,
			o.wall, o.cpu, p.wall/o.wall, p.cpu/o.cpu, f.wall, f.cpu, p.wall/f.wall, p.cpu/f.cpu, h>>20)
	}
	mc, mp, mo, mf := medianFig(ceil), medianFig(proj), medianFig(one), medianFig(full)
	fmt.Printf("median of %d rounds (wall clock; per CPU second in brackets): ceiling %.0f rows/s [%.0f]; projector %.0f results/s [%.0f] = %.0f%% [%.0f%%] of ceiling; "+
		"one per transaction %.0f/s [%.0f] (projector %.1fx [%.1fx]); one per transaction, synchronous=FULL %.0f/s [%.0f] (projector %.1fx [%.1fx])\n",
		len(ceil), mc.wall, mc.cpu, mp.wall, mp.cpu, 100*mp.wall/mc.wall, 100*mp.cpu/mc.cpu,
		mo.wall, mo.cpu, mp.wall/mo.wall, mp.cpu/mo.cpu, mf.wall, mf.cpu, mp.wall/mf.wall, mp.cpu/mf.cpu)
	b.ReportMetric(mc.wall, "ceiling_rows/s")
	b.ReportMetric(mp.wall, "projector_results/s")
	b.ReportMetric(mo.wall, "one_per_tx_results/s")
	b.ReportMetric(100*mp.wall/mc.wall, "%_of_ceiling")
	b.ReportMetric(mp.wall/mo.wall, "x_one_per_tx")
	b.ReportMetric(mf.wall, "one_per_tx_full_results/s")
}

func benchLogger(n *nodetest.Node) *slog.Logger {
	if os.Getenv("KANADE_BENCH_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return n.Logger
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// medianFig takes the median of each figure on its own.
func medianFig(v []figure) figure {
	w, c := make([]float64, len(v)), make([]float64, len(v))
	for i, f := range v {
		w[i], c[i] = f.wall, f.cpu
	}
	slices.Sort(w)
	slices.Sort(c)
	return figure{w[len(w)/2], c[len(c)/2]}
}

func benchDB(b *testing.B) *store.DB {
	return nodetest.OpenStore(b, filepath.Join(b.TempDir(), "kanade.db"))
}

// benchCeiling inserts the benchmark's rows with nothing but batched
// INSERTs and returns rows per second.
func benchCeiling(b *testing.B, total, perExec int) figure {
	return benchCeilingDB(b, benchDB(b), total, perExec)
}

// figure is a rate by the wall clock and by the CPU time the whole process
// spent meanwhile; the second is less at the mercy of other load on a
// shared machine.
type figure struct{ wall, cpu float64 }

func measure(n int, f func()) figure {
	w, c := time.Now(), cpuTime()
	f()
	return figure{float64(n) / time.Since(w).Seconds(), float64(n) / (cpuTime() - c).Seconds()}
}

func benchCeilingDB(b *testing.B, db *store.DB, total, perExec int) figure {
	out := benchStdout(1024)
	rec := store.FormatTime(time.Now())
	ctx := context.Background()
	return measure(total, func() {
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
						nullStr(r.ManifestID), nil, nil); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchProjector replays the stream into an empty database with a new
// consumer and returns results per second and the largest heap in use
// seen (the whole process: the embedded server included).
func benchProjector(b *testing.B, n *nodetest.Node, js jetstream.JetStream, total int, node string) (figure, uint64) {
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
	nc := n.Conn(b)
	var p *Projector
	fig := measure(total, func() {
		var err error
		p, err = Start(context.Background(), Options{Conn: nc, DB: db, NodeName: node, NoService: true, Logger: benchLogger(n)})
		if err != nil {
			b.Fatal(err)
		}
		// A replay into an empty database drops the secondary indexes:
		// it is done once they are back.
		waitUntil(b, "projection", 10*time.Minute, func() bool {
			return p.streams[0].applied.Load() >= uint64(total) && !p.rebuild.active()
		})
	})
	p.Stop()
	close(stop)
	wg.Wait()
	if got := count(b, db, `SELECT count(*) FROM execution_results`); got != total {
		b.Fatalf("%d rows, want %d", got, total)
	}
	deleteConsumers(b, js, node)
	return fig, maxHeap.Load()
}

// benchOnePerTx is upstream's design: a consumer hands over one message at
// a time; each is applied in its own transaction, then acked.
func benchOnePerTx(b *testing.B, n *nodetest.Node, js jetstream.JetStream, count int, node string, full bool) figure {
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
	var cc jetstream.ConsumeContext
	fig := measure(count, func() {
		cc, err = c.Consume(func(m jetstream.Msg) {
			if applied.Load() >= int64(count) {
				return
			}
			items, _ := s.decode(ctx, []jetstream.Msg{m})
			if err := s.apply(items); err != nil {
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
	})
	cc.Stop()
	deleteConsumers(b, js, node)
	return fig
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

	// KANADE_BENCH_VARIANTS (e.g. "base,new") runs each variant of the
	// child in turn, KANADE_BENCH_ROUNDS times, side by side.
	variants := strings.Split(os.Getenv("KANADE_BENCH_VARIANTS"), ",")
	res := map[string][]float64{}
	for round := range benchRounds() {
		for _, v := range variants {
			el := benchRebuildOnce(b, n.URL, total, v, round)
			res[v] = append(res[v], el)
		}
		if len(variants) == 1 {
			break
		}
	}
	for _, v := range variants {
		d := slices.Clone(res[v])
		slices.Sort(d)
		fmt.Printf("variant %q: rebuild of %d results, median %.1f s of %v (%.0f results/s)\n", v, total, d[len(d)/2], res[v], float64(total)/d[len(d)/2])
	}
	d := slices.Clone(res[variants[len(variants)-1]])
	slices.Sort(d)
	b.ReportMetric(d[len(d)/2], "rebuild_s")
	b.ReportMetric(float64(total)/d[len(d)/2], "results/s")
}

// benchRebuildOnce runs one child projector of the variant against a new
// empty database until it has applied total results; it returns seconds.
func benchRebuildOnce(b *testing.B, url string, total int, variant string, round int) float64 {
	dbPath := filepath.Join(b.TempDir(), fmt.Sprintf("rebuild-%s-%d.db", variant, round))
	db := nodetest.OpenStore(b, dbPath)
	start := time.Now()
	cmd := startChildVariant(b, url, dbPath, variant)
	var samples []string
	var maxRSS uint64
	next := total / 10
	for {
		off := offsetOf(b, db, wire.StreamResults)
		rss := procRSS(cmd.Process.Pid, "VmRSS")
		maxRSS = max(maxRSS, rss)
		if int(off) >= next {
			samples = append(samples, fmt.Sprintf("%d%%: %.1fs rss %d MiB", 100*int(off)/total, time.Since(start).Seconds(), rss>>10))
			next += total / 10
		}
		if int(off) >= total && rebuildDone(b, db) {
			samples = append(samples, fmt.Sprintf("indexes in place: %.1fs rss %d MiB", time.Since(start).Seconds(), rss>>10))
			break
		}
		if time.Since(start) > 20*time.Minute {
			b.Fatalf("rebuild stuck at %d", off)
		}
		time.Sleep(200 * time.Millisecond)
	}
	el := time.Since(start)
	hwm := procRSS(cmd.Process.Pid, "VmHWM")
	cpu := procCPU(cmd.Process.Pid)
	// SIGTERM, so a child asked for a CPU profile writes it.
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	fmt.Printf("variant %q: rebuild of %d results into an empty database: %.1f s (%.0f results/s); child CPU %.1f s (%.0f results per CPU second); child max RSS %d MiB (VmHWM %d MiB)\n  %s\n",
		variant, total, el.Seconds(), float64(total)/el.Seconds(), cpu.Seconds(), float64(total)/cpu.Seconds(), maxRSS>>10, hwm>>10, strings.Join(samples, "\n  "))
	return el.Seconds()
}

// rebuildDone reports whether the rebuilt projection is whole: every
// index of the schema is in place (a fast rebuild recreates them at the
// end).
func rebuildDone(b *testing.B, db *store.DB) bool {
	return count(b, db, `SELECT count(*) FROM projector_rebuild`) == 0
}

// procCPU reads the user + system CPU time of a process from /proc
// (clock ticks of 1/100 s on Linux).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	k, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond
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
