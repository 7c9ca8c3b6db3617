package sim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/sim"
	"github.com/kanade-go/kanade/wire"
)

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
	url := runNode(b, sync).NATS
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
	request(b, nc, "kanade.jobs.put", `{"id":"bench","version":"1.0.0","execute":{"shell":"sh","script":"# sim: outcome=success duration=0s output=256\necho bench","timeout":"60s"}}`, nil)

	before := heapInUse()
	fleetConn, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer fleetConn.Close()
	startAt := time.Now()
	f, err := sim.Start(context.Background(), sim.Options{
		Conn: fleetConn, Agents: agents, Groups: []string{"g1", "g2"}, Subscriptions: mode,
		Logger: nodetest.Logger(b),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Stop()
	startTook := time.Since(startAt)
	idleHeap := heapInUse() - before

	// The exec counts alive agents: wait until every heartbeat is projected.
	for deadline := time.Now().Add(2 * time.Minute); ; {
		// The counts alone (limit 0): 3,000 rows do not fit in one reply.
		m, err := nc.Request("kanade.agents.list", []byte(`{"limit":0}`), 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		alive, _ := strconv.Atoi(m.Header.Get("X-Online-Count"))
		if alive == agents {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d agents alive after 2 min", alive, agents)
		}
		time.Sleep(50 * time.Millisecond)
	}

	var toResults, toRows []time.Duration
	b.ResetTimer()
	for i := range b.N {
		info, err := results.Info(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		base := info.State.Msgs
		t0 := time.Now()
		var reply struct {
			ExecID      string `json:"exec_id"`
			TargetCount int    `json:"target_count"`
		}
		request(b, nc, "kanade.jobs.exec", `{"job_id":"bench","target":{"all":true}}`, &reply)
		if reply.TargetCount != agents {
			b.Fatalf("target_count %d, want %d", reply.TargetCount, agents)
		}
		var resultsAt time.Duration
		for {
			if resultsAt == 0 {
				info, err := results.Info(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				if int(info.State.Msgs-base) >= agents {
					resultsAt = time.Since(t0)
				}
			}
			var ex []struct {
				ExecID       string `json:"exec_id"`
				SuccessCount int    `json:"success_count"`
				FailureCount int    `json:"failure_count"`
			}
			request(b, nc, "kanade.executions.list", `{"job_id":"bench","limit":1}`, &ex)
			if resultsAt != 0 && len(ex) == 1 && ex[0].ExecID == reply.ExecID && ex[0].SuccessCount+ex[0].FailureCount >= agents {
				toRows = append(toRows, time.Since(t0))
				toResults = append(toResults, resultsAt)
				break
			}
			if time.Since(t0) > 5*time.Minute {
				b.Fatalf("iteration %d: not projected after 5 min: %+v (%v)", i, ex, f.Stats())
			}
			time.Sleep(10 * time.Millisecond)
		}
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
	median := func(d []time.Duration) time.Duration {
		d = slices.Clone(d)
		slices.Sort(d)
		return d[len(d)/2].Round(time.Millisecond)
	}
	b.ReportMetric(float64(median(toResults).Milliseconds()), "ms-to-results-median")
	b.ReportMetric(float64(median(toRows).Milliseconds()), "ms-to-rows-median")
	b.ReportMetric(float64(startTook.Milliseconds()), "ms-fleet-start")
	b.ReportMetric(float64(idleHeap)/mib, "MiB-heap-agents-idle")
	b.ReportMetric(float64(runHeap)/mib, "MiB-heap-growth-after")
	b.ReportMetric(float64(procStatus("VmRSS"))/mib, "MiB-process-rss")
	b.ReportMetric(0, "ns/op")
	fmt.Printf("    %s: %d agents; fleet start %v; exec->last result in RESULTS median %v of %v; exec->counters complete (rows projected) median %v of %v; "+
		"heap: agents idle %.1f MiB, growth after the runs (agents + node) %.1f MiB; process RSS %.0f MiB (peak so far %.0f MiB); publish retries %d\n",
		b.Name(), agents, startTook.Round(time.Millisecond), median(toResults), toResults, median(toRows), toRows,
		float64(idleHeap)/mib, float64(runHeap)/mib, float64(procStatus("VmRSS"))/mib, float64(procStatus("VmHWM"))/mib, f.Stats().PublishRetries)
}

// request calls a backend service over NATS and decodes its JSON answer.
func request(b *testing.B, nc *nats.Conn, subject, body string, out any) {
	b.Helper()
	m, err := nc.Request(subject, []byte(body), 30*time.Second)
	if err != nil {
		b.Fatalf("%s: %v", subject, err)
	}
	if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
		b.Fatalf("%s: %s %s", subject, code, m.Data)
	}
	if out != nil {
		if err := json.Unmarshal(m.Data, out); err != nil {
			b.Fatalf("%s: %v in %s", subject, err, m.Data)
		}
	}
}
