package sim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/node"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/sim"
	"github.com/kanade-go/kanade/wire"
)

// benchNode runs a whole node in-process (as `kanade serve` does) and
// returns its NATS URL and data dir; it stops at the end of the benchmark.
func benchNode(b *testing.B, sync embedded.Sync) (string, string) {
	b.Helper()
	dir := b.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan node.Ready, 1)
	done := make(chan error, 1)
	go func() {
		done <- node.Run(ctx, node.Options{
			DataDir: dir, HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:0", NATSSync: sync,
			NodeName: "bench", Logger: nodetest.Logger(b),
		}, func(r node.Ready) { ready <- r })
	}()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("node: %v", err)
		}
	})
	select {
	case r := <-ready:
		return r.NATS, dir
	case err := <-done:
		b.Fatalf("node did not start: %v", err)
	case <-time.After(60 * time.Second):
		b.Fatal("node not ready in 60s")
	}
	return "", ""
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// procStatus reads a kB field (VmRSS, VmHWM) of /proc/self/status.
func procStatus(field string) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

const mib = 1 << 20

// BenchmarkBroadcast3000: 3,000 simulated agents in this process against
// an in-process node; each iteration publishes one broadcast Command with
// an exec_id and waits until 3,000 results are stored in RESULTS.
//
//	go test -run '^$' -bench Broadcast3000 -benchtime 3x ./sim
func BenchmarkBroadcast3000(b *testing.B) {
	agents := 3000
	if s := os.Getenv("KANADE_BENCH_AGENTS"); s != "" {
		agents, _ = strconv.Atoi(s)
	}
	for _, sync := range []embedded.Sync{embedded.SyncAlways, embedded.SyncInterval} {
		for _, mode := range []sim.Subscriptions{sim.Shared, sim.PerAgent} {
			b.Run(fmt.Sprintf("sync=%s/subs=%s", sync, mode), func(b *testing.B) {
				benchBroadcast(b, agents, sync, mode)
			})
		}
	}
}

func benchBroadcast(b *testing.B, agents int, sync embedded.Sync, mode sim.Subscriptions) {
	url, _ := benchNode(b, sync)
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	results, err := js.Stream(context.Background(), wire.StreamResults)
	if err != nil {
		b.Fatal(err)
	}

	before := heapInUse()
	fleetConn, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer fleetConn.Close()
	startAt := time.Now()
	f, err := sim.Start(context.Background(), sim.Options{
		Conn: fleetConn, Agents: agents, Groups: []string{"g1", "g2"}, Subscriptions: mode,
		Mix:    sim.Mix{Success: 1, MinDuration: 0, MaxDuration: 0, OutputBytes: 256},
		Logger: nodetest.Logger(b),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Stop()
	startTook := time.Since(startAt)
	idleHeap := heapInUse() - before

	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		execID := uuid.NewString()
		cmd := wire.Command{ID: "bench", Version: "1", RequestID: uuid.NewString(), ExecID: &execID,
			Shell: wire.ShellSh, Script: "echo bench", TimeoutSecs: 60, Staleness: wire.Staleness{Mode: "cached"}}
		data, _ := json.Marshal(cmd)
		info, err := results.Info(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		base := info.State.Msgs
		t0 := time.Now()
		if _, err := js.Publish(context.Background(), wire.SubjectCommandsAll, data); err != nil {
			b.Fatal(err)
		}
		for {
			info, err := results.Info(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			if int(info.State.Msgs-base) >= agents {
				break
			}
			if time.Since(t0) > 5*time.Minute {
				b.Fatalf("iteration %d: %d of %d results after 5 min (%v)", i, info.State.Msgs, agents, f.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
		total += time.Since(t0)
		b.StopTimer()
		for s := f.Stats(); s.Running > 0; s = f.Stats() {
			time.Sleep(5 * time.Millisecond)
		}
		if s := f.Stats(); s.ResultsPublished != int64(agents*(i+1)) || s.StartedPublished != s.ResultsPublished {
			b.Fatalf("stats %v after %d broadcasts", s, i+1)
		}
		b.StartTimer()
	}
	b.StopTimer()
	runHeap := heapInUse() - before
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/broadcast")
	b.ReportMetric(float64(startTook.Milliseconds()), "ms-fleet-start")
	b.ReportMetric(float64(idleHeap)/mib, "MiB-agents-heap-idle")
	b.ReportMetric(float64(runHeap)/mib, "MiB-agents-heap-after")
	b.ReportMetric(float64(procStatus("VmRSS"))/mib, "MiB-process-rss")
	b.ReportMetric(float64(procStatus("VmHWM"))/mib, "MiB-process-peak-rss")
	b.ReportMetric(0, "ns/op")
	fmt.Printf("    %s: %d agents, fleet start %v, broadcast->last result %v (mean of %d), agents heap idle %.1f MiB / after runs %.1f MiB, process RSS %.0f MiB (peak %.0f MiB), retries %d\n",
		b.Name(), agents, startTook.Round(time.Millisecond), (total / time.Duration(b.N)).Round(time.Millisecond), b.N,
		float64(idleHeap)/mib, float64(runHeap)/mib, float64(procStatus("VmRSS"))/mib, float64(procStatus("VmHWM"))/mib, f.Stats().PublishRetries)
}
