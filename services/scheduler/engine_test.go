package scheduler

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/wire"
)

// catalogOf opens the catalog buckets directly, for setting things up
// before any scheduler runs.
func catalogOf(t testing.TB, n *nodetest.Node) *Catalog {
	t.Helper()
	js := n.JetStream(t)
	ctx := context.Background()
	jobs, err := js.KeyValue(ctx, wire.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	scheds, err := js.KeyValue(ctx, wire.BucketSchedules)
	if err != nil {
		t.Fatal(err)
	}
	return &Catalog{Jobs: jobs, Schedules: scheds, JS: js}
}

func wantTick(t *testing.T, c wire.Command, schedID string, tick time.Time) {
	t.Helper()
	execID, reqID := TickIDs(schedID, tick)
	if c.ExecID == nil || *c.ExecID != execID || c.RequestID != reqID {
		var got string
		if c.ExecID != nil {
			got = *c.ExecID
		}
		for _, id := range []string{"a", "b", "catch"} {
			for d := -10 * time.Minute; d <= 10*time.Minute; d += 5 * time.Second {
				if e, _ := TickIDs(id, tick.Add(d)); e == got {
					t.Fatalf("command is %s at %v, want %s at %v", id, tick.Add(d), schedID, tick)
				}
			}
		}
		t.Fatalf("command exec_id %s request_id %s, want %s tick %v (%s, %s)", got, c.RequestID, schedID, tick, execID, reqID)
	}
}

func waitSynced(t *testing.T, s *Scheduler) {
	t.Helper()
	select {
	case <-s.Engine.Synced():
	case <-time.After(15 * time.Second):
		t.Fatal("engine did not sync")
	}
}

// startEvery10s starts a synced scheduler on a fake clock at t0 (a whole
// minute) with the echo job and schedule a firing every 10 s, armed for
// t0+10s, and listens to every command.
func startEvery10s(t *testing.T, n *nodetest.Node, t0 time.Time) (*Scheduler, *fakeClock, *nats.Conn, *commandSub) {
	t.Helper()
	clock := newFakeClock(t0)
	s := startScheduler(t, n, "a", clock)
	waitSynced(t, s)
	nc := n.Conn(t)
	cmds := subscribeCommands(t, nc, wire.SubjectCommandsAll)
	mustCall(t, nc, "kanade.jobs.put", "", echoJob)
	mustCall(t, nc, "kanade.schedules.put", "", `{"id":"a","job_id":"echo","cron":"*/10 * * * * *"}`)
	clock.waitArmed(t, t0.Add(10*time.Second))
	return s, clock, nc, cmds
}

// The engine fires on the tick, and a put, disable, enable or delete in
// the bucket takes effect at once; the job is read at fire time.
func TestEngineFollowsKV(t *testing.T) {
	n := nodetest.Start(t)
	// The fake clock stays behind the real one: a schedule written at real
	// time R with a tick between R and the fake now would be a missed
	// tick to catch up, which is not what this test is about.
	t0 := time.Now().Truncate(time.Minute).Add(-10 * time.Minute)
	s, clock, nc, cmds := startEvery10s(t, n, t0)
	clock.Set(t0.Add(10 * time.Second))
	c, _ := cmds.next(t)
	wantTick(t, c, "a", t0.Add(10*time.Second))
	if c.Script != "echo kanade" || c.TimeoutSecs != 30 || c.DeadlineAt != nil {
		t.Errorf("command %+v", c)
	}

	// Disabled: its ticks at +20…+60 s pass silently. b ticks at second 5;
	// a timer armed for b's +65 s means a is out of the heap.
	mustCall(t, nc, "kanade.schedules.disable", "", `{"id":"a"}`)
	mustCall(t, nc, "kanade.schedules.put", "", `{"id":"b","job_id":"echo","cron":"5 * * * * *","starting_deadline":"30s"}`)
	clock.waitArmed(t, t0.Add(65*time.Second))
	clock.Set(t0.Add(65 * time.Second))
	c, _ = cmds.next(t)
	wantTick(t, c, "b", t0.Add(65*time.Second))
	if c.DeadlineAt == nil || !c.DeadlineAt.Equal(t0.Add(95*time.Second)) {
		t.Errorf("deadline_at %v, want tick + starting_deadline", c.DeadlineAt)
	}
	cmds.none(t, nc)

	mustCall(t, nc, "kanade.schedules.enable", "", `{"id":"a"}`)
	clock.waitArmed(t, t0.Add(70*time.Second))
	clock.Set(t0.Add(70 * time.Second))
	c, _ = cmds.next(t)
	wantTick(t, c, "a", t0.Add(70*time.Second))

	// Deleted: only b is left; and b picks up the edited job.
	mustCall(t, nc, "kanade.schedules.delete", "", `{"id":"a"}`)
	mustCall(t, nc, "kanade.jobs.put", "", `{"id":"echo","version":"1.0.1","execute":{"shell":"sh","script":"echo v2","timeout":"1m"}}`)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if m, _ := s.Engine.o.JobCache.Get("echo"); m.Version == "1.0.1" {
			break // the job mirror has the edit
		}
		if time.Now().After(deadline) {
			t.Fatal("the job edit never reached the engine")
		}
	}
	clock.waitArmed(t, t0.Add(125*time.Second))
	clock.Set(t0.Add(125 * time.Second))
	c, _ = cmds.next(t)
	wantTick(t, c, "b", t0.Add(125*time.Second))
	if c.Script != "echo v2" || c.Version != "1.0.1" || c.TimeoutSecs != 60 {
		t.Errorf("the edited job did not apply: %+v", c)
	}
	cmds.none(t, nc)
}

// After downtime the most recent missed tick fires once, within
// starting_deadline, with deadline_at = tick + starting_deadline; a second
// node starting later does not fire it again.
func TestEngineCatchUpWithinDeadline(t *testing.T) {
	n := nodetest.Start(t)
	ctx := context.Background()
	cat := catalogOf(t, n)
	if _, err := cat.PutJob(ctx, []byte(echoJob), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.PutSchedule(ctx, []byte(`{"id":"catch","job_id":"echo","cron":"0 */10 * * * *","starting_deadline":"1h"}`), ""); err != nil {
		t.Fatal(err)
	}
	nc := n.Conn(t)
	cmds := subscribeCommands(t, nc, wire.SubjectCommandsAll)

	// The nodes were down from before T until T+35m: T, T+10m, T+20m and
	// T+30m were missed; only T+30m fires.
	T := time.Now().Truncate(time.Hour).Add(2 * time.Hour)
	clock := newFakeClock(T.Add(35 * time.Minute))
	a := startScheduler(t, n, "a", clock)
	waitSynced(t, a)
	c, _ := cmds.next(t)
	wantTick(t, c, "catch", T.Add(30*time.Minute))
	if c.DeadlineAt == nil || !c.DeadlineAt.Equal(T.Add(90*time.Minute)) {
		t.Errorf("deadline_at %v, want %v", c.DeadlineAt, T.Add(90*time.Minute))
	}
	recs := executionRecords(t, n.JetStream(t))
	if len(recs) != 1 || recs[0].InitiatedBy != "schedule:catch" || !recs[0].InitiatedAt.Equal(T.Add(30*time.Minute)) ||
		// The record's deadline is when the last run must have ended: the
		// Command's, then the 30 s timeout and the 2 min reaper margin.
		recs[0].DeadlineAt == nil || !recs[0].DeadlineAt.Equal(T.Add(90*time.Minute+150*time.Second)) {
		t.Errorf("records %+v", recs)
	}

	b := startScheduler(t, n, "b", clock)
	waitSynced(t, b)
	cmds.none(t, nc)

	// Both run on: the next tick fires once.
	clock.waitArmed(t, T.Add(40*time.Minute))
	clock.Set(T.Add(40 * time.Minute))
	c, _ = cmds.next(t)
	wantTick(t, c, "catch", T.Add(40*time.Minute))
	cmds.none(t, nc)
}

// A missed tick older than starting_deadline is skipped (and logged), and
// the default deadline 0 never catches up.
func TestEngineCatchUpBeyondDeadline(t *testing.T) {
	for _, deadline := range []string{"2m", ""} {
		t.Run("deadline="+deadline, func(t *testing.T) {
			n := nodetest.Start(t)
			ctx := context.Background()
			cat := catalogOf(t, n)
			if _, err := cat.PutJob(ctx, []byte(echoJob), ""); err != nil {
				t.Fatal(err)
			}
			body := `{"id":"catch","job_id":"echo","cron":"0 */10 * * * *","starting_deadline":"` + deadline + `"}`
			if _, err := cat.PutSchedule(ctx, []byte(body), ""); err != nil {
				t.Fatal(err)
			}
			nc := n.Conn(t)
			cmds := subscribeCommands(t, nc, wire.SubjectCommandsAll)

			T := time.Now().Truncate(time.Hour).Add(2 * time.Hour)
			clock := newFakeClock(T.Add(35 * time.Minute)) // T+30m is 5m old
			s := startScheduler(t, n, "a", clock)
			waitSynced(t, s)
			cmds.none(t, nc)
			claims, err := n.JetStream(t).KeyValue(ctx, BucketClaims)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := claims.Get(ctx, "catch"); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Errorf("the skipped tick was claimed: %v", err)
			}

			// The engine is live: the next tick fires on time.
			clock.waitArmed(t, T.Add(40*time.Minute))
			clock.Set(T.Add(40 * time.Minute))
			c, _ := cmds.next(t)
			wantTick(t, c, "catch", T.Add(40*time.Minute))
		})
	}
}

// The claims bucket holds one key per schedule, acked without waiting for
// an fsync on a single server, read from the stream leader; a second
// scheduler reuses it.
func TestClaimsBucket(t *testing.T) {
	n := nodetest.Start(t)
	startScheduler(t, n, "a", nil)
	startScheduler(t, n, "b", nil)
	js := n.JetStream(t)
	ctx := context.Background()
	st, err := js.Stream(ctx, "KV_"+BucketClaims)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.PersistMode != jetstream.AsyncPersistMode || cfg.MaxMsgsPerSubject != 1 || cfg.Storage != jetstream.FileStorage || cfg.AllowDirect {
		t.Errorf("claims stream config: persist %v, per subject %d, storage %v, direct %v", cfg.PersistMode, cfg.MaxMsgsPerSubject, cfg.Storage, cfg.AllowDirect)
	}
	kv, err := js.KeyValue(ctx, BucketClaims)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Create(ctx, "s1", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(ctx, "s1", []byte(`{}`), rev+7); !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Errorf("a stale compare-and-set succeeded: %v", err)
	}
}

// A running engine that was stalled (a suspended machine) past the late
// grace does not fire the backlog: it moves on to the next tick.
func TestEngineStalledSkipsBacklog(t *testing.T) {
	n := nodetest.Start(t)
	t0 := time.Now().Truncate(time.Minute).Add(-20 * time.Minute)
	_, clock, nc, cmds := startEvery10s(t, n, t0)

	// Five minutes pass at once: 30 ticks are overdue, the oldest far past
	// the grace. The backlog is skipped (and logged); the next tick fires.
	clock.Set(t0.Add(5*time.Minute + 5*time.Second))
	clock.waitArmed(t, t0.Add(5*time.Minute+10*time.Second))
	cmds.none(t, nc)
	clock.Set(t0.Add(5*time.Minute + 10*time.Second))
	c, _ := cmds.next(t)
	wantTick(t, c, "a", t0.Add(5*time.Minute+10*time.Second))
	cmds.none(t, nc)
}
