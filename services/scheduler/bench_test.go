package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// Run with:
//
//	go test ./services/scheduler -run '^$' -bench Scheduler -benchtime 1x
//
// Each benchmark does its measurement once, whatever b.N.

const benchLoaded = 10000

// loadSchedules stores count enabled schedules that fire once a year on
// January 1st at a spread of times: loaded, but idle during the benchmark.
func loadSchedules(b *testing.B, cat *Catalog, count int) {
	b.Helper()
	ctx := context.Background()
	if _, err := cat.PutJob(ctx, []byte(echoJob), ""); err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range count {
		body := fmt.Sprintf(`{"id":"load-%05d","job_id":"echo","cron":"%d %d %d 1 1 *","tz":"Europe/Berlin","target":{"groups":["g%d"]},"jitter":"1m"}`,
			i, r.IntN(60), r.IntN(60), r.IntN(24), i%50)
		c, raw, err := ParseSchedule([]byte(body), "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cat.Schedules.Put(ctx, c.ID, raw); err != nil {
			b.Fatal(err)
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// 10,000 enabled schedules loaded: the heap they cost the engine, and the
// process CPU over 10 s of idling, side by side with the same process
// before the scheduler started (the embedded NATS server idles in both).
func BenchmarkSchedulerIdle10k(b *testing.B) {
	n := nodetest.Start(b)
	b.StopTimer()
	loadSchedules(b, catalogOf(b, n), benchLoaded)
	const idle = 10 * time.Second

	before := heapInUse()
	c0 := cpuTime()
	time.Sleep(idle)
	baseCPU := cpuTime() - c0

	b.StartTimer()
	start := time.Now()
	s, err := Start(context.Background(), Options{Conn: n.Conn(b), DB: n.DB, NodeName: "bench", Logger: n.Logger})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	<-s.Engine.Synced()
	load := time.Since(start)
	b.StopTimer()
	after := heapInUse()

	c1 := cpuTime()
	time.Sleep(idle)
	schedCPU := cpuTime() - c1

	heapMB := float64(int64(after)-int64(before)) / (1 << 20)
	b.ReportMetric(heapMB, "heap-MB")
	b.ReportMetric(float64(int64(after)-int64(before))/benchLoaded, "heap-B/schedule")
	b.ReportMetric(load.Seconds(), "load-s")
	b.ReportMetric(float64(schedCPU.Milliseconds()), "cpu-ms/10s-idle")
	b.ReportMetric(float64(baseCPU.Milliseconds()), "baseline-cpu-ms/10s")
	fmt.Printf("10k schedules: load %v, heap +%.1f MB (%.0f B/schedule), idle CPU %v per 10 s (same process without scheduler: %v)\n",
		load.Round(time.Millisecond), heapMB, float64(int64(after)-int64(before))/benchLoaded, schedCPU, baseCPU)
}

// Tick-to-publish latency: with 10,000 schedules loaded, K more fire every
// second; the latency is from the tick to a subscriber on commands.all
// receiving the Command (the Command's deadline_at is tick + 1h, which
// tells the tick).
//
// nodetest's server fsyncs on an interval; `kanade serve` fsyncs every
// write by default (--nats-sync always), which the sync=always runs use.
func BenchmarkSchedulerLatency(b *testing.B) {
	for _, sync := range []embedded.Sync{embedded.SyncInterval, embedded.SyncAlways} {
		for _, k := range []int{10, 100, 500} {
			b.Run(fmt.Sprintf("sync=%s/every-second=%d", sync, k), func(b *testing.B) {
				benchLatency(b, sync, k, 10*time.Second)
			})
		}
	}
}

// benchNode is nodetest.Start with a choice of fsync mode.
func benchNode(b *testing.B, sync embedded.Sync) *nodetest.Node {
	if sync == embedded.SyncInterval {
		return nodetest.Start(b)
	}
	dir := b.TempDir()
	log := nodetest.Logger(b)
	srv, err := embedded.Start(embedded.Options{StoreDir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:0", Sync: sync, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Shutdown)
	n := &nodetest.Node{Server: srv, URL: srv.ClientURL(), Dir: dir, Logger: log}
	if err := streams.Ensure(context.Background(), n.JetStream(b), 1, log); err != nil {
		b.Fatal(err)
	}
	n.DB = nodetest.OpenStore(b, filepath.Join(dir, "kanade.db"))
	return n
}

func benchLatency(b *testing.B, sync embedded.Sync, k int, run time.Duration) {
	n := benchNode(b, sync)
	cat := catalogOf(b, n)
	loadSchedules(b, cat, benchLoaded)
	ctx := context.Background()
	s, err := Start(ctx, Options{Conn: n.Conn(b), DB: n.DB, NodeName: "bench", Logger: n.Logger})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	<-s.Engine.Synced()

	nc := n.Conn(b)
	ch := make(chan time.Duration, 1<<16)
	sub, err := nc.Subscribe(wire.SubjectCommandsAll, func(m *nats.Msg) {
		recv := time.Now()
		var c wire.Command
		if json.Unmarshal(m.Data, &c) == nil && c.DeadlineAt != nil {
			ch <- recv.Sub(c.DeadlineAt.Add(-time.Hour))
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()

	for i := range k {
		body := fmt.Sprintf(`{"id":"fast-%04d","job_id":"echo","cron":"* * * * * *","starting_deadline":"1h"}`, i)
		if _, err := cat.PutSchedule(ctx, []byte(body), ""); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second) // all k loaded before measuring
	for len(ch) > 0 {
		<-ch
	}
	c0 := cpuTime()
	b.ResetTimer()
	time.Sleep(run)
	b.StopTimer()
	cpu := cpuTime() - c0
	var lat []time.Duration
	for len(ch) > 0 {
		lat = append(lat, <-ch)
	}
	if len(lat) == 0 {
		b.Fatal("no commands")
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	b.ReportMetric(float64(p(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(len(lat))/run.Seconds(), "fires/s")
	fmt.Printf("sync=%s: %d every-second schedules (+%d loaded): %d fires in %v, tick-to-command p50 %v p99 %v max %v, process CPU %v\n",
		sync, k, benchLoaded, len(lat), run, p(0.5).Round(10*time.Microsecond), p(0.99).Round(10*time.Microsecond),
		lat[len(lat)-1].Round(10*time.Microsecond), cpu.Round(time.Millisecond))
}

// The upcoming list with 10,000 schedules loaded: a bucket status request
// and a sort of the engine's table.
func BenchmarkSchedulerUpcoming10k(b *testing.B) {
	n := nodetest.Start(b)
	loadSchedules(b, catalogOf(b, n), benchLoaded)
	ctx := context.Background()
	s, err := Start(ctx, Options{Conn: n.Conn(b), DB: n.DB, NodeName: "bench", Logger: n.Logger})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	<-s.Engine.Synced()
	b.ResetTimer()
	for b.Loop() {
		up, err := s.Engine.Upcoming(ctx, 50)
		if err != nil || len(up) != 50 {
			b.Fatal(len(up), err)
		}
	}
}
