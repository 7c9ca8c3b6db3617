package scheduler

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/store"
)

// The per-minute poll with 1,000 per_pc schedules over 10,000 alive agents,
// in the steady state (every PC has succeeded, so nothing is dispatched):
// what one poll minute costs the node, wall clock and process CPU. Each
// schedule's poll claims its minute (a compare-and-set), resolves the
// expected PCs (10,000 alive), and reads its job's completions (10,000
// rows of execution_results). The 1,000 schedules share 10 jobs, so the
// table holds 100,000 results; a completions query reads the rows of one
// job only (idx_results_job), as it would with one job per schedule.
//
//	go test ./services/scheduler -run '^$' -bench ReconcilePoll -benchtime 1x
func BenchmarkReconcilePoll(b *testing.B) {
	agents, schedules, jobs := 10000, 1000, 10
	if v, err := strconv.Atoi(os.Getenv("KANADE_BENCH_SCHEDULES")); err == nil {
		schedules = v // a quicker run for profiling
	}
	n := nodetest.Start(b)
	b.StopTimer()
	start := time.Date(2026, 6, 1, 12, 0, 30, 0, time.UTC)
	ctx := context.Background()
	tx, err := n.DB.W.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range agents {
		if _, err := tx.Exec(`INSERT INTO agents (pc_id, last_heartbeat) VALUES (?, ?)`,
			fmt.Sprintf("PC-%05d", i), store.FormatTime(start.Add(time.Hour))); err != nil {
			b.Fatal(err)
		}
	}
	done := store.FormatTime(start.Add(-time.Hour))
	for j := range jobs {
		for i := range agents {
			if _, err := tx.Exec(`INSERT INTO execution_results (result_id, request_id, exec_id, pc_id, exit_code,
					started_at, finished_at, recorded_at, job_id, version) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, '1')`,
				fmt.Sprintf("r-%d-%d", j, i), "req", "exec", fmt.Sprintf("PC-%05d", i), done, done, done, fmt.Sprintf("job-%d", j)); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	cat := catalogOf(b, n)
	for j := range jobs {
		if _, err := cat.PutJob(ctx, []byte(fmt.Sprintf(`{"id":"job-%d","version":"1","execute":{"shell":"sh","script":"true","timeout":"1m"}}`, j)), ""); err != nil {
			b.Fatal(err)
		}
	}
	for i := range schedules {
		_, raw, err := ParseSchedule([]byte(fmt.Sprintf(`{"id":"pp-%04d","when":{"per_pc":"once"},"job_id":"job-%d","target":{"all":true},"tz":"utc"}`, i, i%jobs)), "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cat.Schedules.Put(ctx, fmt.Sprintf("pp-%04d", i), raw); err != nil {
			b.Fatal(err)
		}
	}
	clock := newFakeClock(start)
	var handled atomic.Int64
	s, err := Start(ctx, Options{Conn: n.Conn(b), DB: n.DB, NodeName: "bench", Logger: n.Logger, Clock: clock,
		Observe: func(string, time.Time) { handled.Add(1) }})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	<-s.Engine.Synced()

	b.StartTimer()
	// Minute 1 reads every job's completions whole (cold); minutes 2-4
	// read only what changed (warm).
	const minutes = 4
	var wall, cpu, coldWall, coldCPU time.Duration
	for k := 1; k <= minutes; k++ {
		at := start.Truncate(time.Minute).Add(time.Duration(k) * time.Minute)
		clock.waitArmed(b, at)
		want := handled.Load() + int64(schedules)
		c0, w0 := cpuTime(), time.Now()
		clock.Set(at)
		for handled.Load() < want {
			time.Sleep(time.Millisecond)
		}
		if k == 1 {
			coldWall, coldCPU = time.Since(w0), cpuTime()-c0
			continue
		}
		wall += time.Since(w0)
		cpu += cpuTime() - c0
	}
	b.StopTimer()
	const warm = minutes - 1
	b.ReportMetric(float64(wall.Milliseconds())/warm, "wall-ms/poll-minute")
	b.ReportMetric(float64(cpu.Milliseconds())/warm, "cpu-ms/poll-minute")
	b.ReportMetric(float64(coldWall.Milliseconds()), "cold-wall-ms")
	fmt.Printf("%d per_pc schedules over %d alive agents, all done: a poll minute takes %v wall, %v CPU (process); the first after start %v wall, %v CPU\n",
		schedules, agents, (wall / warm).Round(time.Millisecond), (cpu / warm).Round(time.Millisecond),
		coldWall.Round(time.Millisecond), coldCPU.Round(time.Millisecond))
}
