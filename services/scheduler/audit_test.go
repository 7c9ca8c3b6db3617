package scheduler

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/audit"
)

// auditTrail follows, on one connection, the scheduler's audit records and
// the Commands, in the order the server relayed them. The scheduler's
// recorder and its Firer share one connection, so that order is the order
// they were published in.
type auditTrail struct {
	ch chan *nats.Msg
}

func followTrail(t *testing.T, nc *nats.Conn) *auditTrail {
	t.Helper()
	tr := &auditTrail{ch: make(chan *nats.Msg, 256)}
	for _, subj := range []string{"audit.scheduler.>", "commands.>"} {
		sub, err := nc.ChanSubscribe(subj, tr.ch)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Unsubscribe() })
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return tr
}

// take returns the next n messages.
func (tr *auditTrail) take(t *testing.T, n int) []*nats.Msg {
	t.Helper()
	var out []*nats.Msg
	for len(out) < n {
		select {
		case m := <-tr.ch:
			out = append(out, m)
		case <-time.After(15 * time.Second):
			t.Fatalf("got %d audit records and Commands, want %d", len(out), n)
		}
	}
	return out
}

// none checks that nothing more came, after a round trip on nc.
func (tr *auditTrail) none(t *testing.T, nc *nats.Conn) {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case m := <-tr.ch:
		t.Fatalf("unexpected %s: %s", m.Subject, m.Data)
	default:
	}
}

// checkRecordedFirst checks that each Command's exec_id had its scheduler
// record before it, and returns the records by exec_id.
func checkRecordedFirst(t *testing.T, msgs []*nats.Msg) map[string]audit.Record {
	t.Helper()
	recs := map[string]audit.Record{}
	for _, m := range msgs {
		if strings.HasPrefix(m.Subject, "audit.") {
			var rec audit.Record
			var p struct {
				ExecID string `json:"exec_id"`
			}
			if err := json.Unmarshal(m.Data, &rec); err != nil {
				t.Fatal(err)
			}
			json.Unmarshal(rec.Payload, &p)
			recs[p.ExecID] = rec
			continue
		}
		var c struct {
			ExecID string `json:"exec_id"`
		}
		json.Unmarshal(m.Data, &c)
		if _, ok := recs[c.ExecID]; !ok {
			t.Errorf("Command on %s (exec %s) published before its audit record", m.Subject, c.ExecID)
		}
	}
	return recs
}

// schedulerRecords reads every record actor "scheduler" wrote on AUDIT.
func schedulerRecords(t *testing.T, js jetstream.JetStream) []audit.Record {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, audit.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var rec audit.Record
		if err := json.Unmarshal(m.Data, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Actor == "scheduler" {
			out = append(out, rec)
		}
	}
	return out
}

// withRecorder gives the scheduler a recorder on AUDIT on its own
// connection, as a node does.
func withRecorder(t *testing.T, logger *slog.Logger) func(*Options) {
	return func(o *Options) {
		rec, err := audit.NewRecorder(context.Background(), o.Conn, 1)
		if err != nil {
			t.Fatal(err)
		}
		o.Audit = rec
		if logger != nil {
			o.Logger = logger
		}
	}
}

// Every kind of scheduled fire (a cron tick, a per_pc poll, a rollout
// wave) leaves exactly one audit record, actor "scheduler", action
// "exec", target its job (as upstream's), naming its schedule and exec,
// before any of its Commands is published.
func TestScheduledFiresAuditedFirst(t *testing.T) {
	r := startRigWith(t, t0, 1, withRecorder(t, nil), "PC-A", "PC-B")
	r.fleet.set(func() { r.fleet.groups["PC-A"] = []string{"canary"} })
	// A job each: per_pc "once" counts a PC's runs of its job, so the
	// plain tick's or the wave's runs, if the fleet reported them before
	// the poll read, would leave a PC out of it.
	jobs := map[string]string{"plain": "echo-plain", "perpc": "echo", "waves": "echo-waves"}
	for _, j := range []string{"echo-plain", "echo-waves"} {
		mustCall(t, r.nc, "kanade.jobs.put", "", strings.Replace(echoJob, `"id":"echo"`, `"id":"`+j+`"`, 1))
	}
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"plain","job_id":"echo-plain","cron":"0 1 12 * * *","target":{"all":true}}`)
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"perpc","when":{"per_pc":"once"},"job_id":"echo","target":{"all":true},"tz":"utc"}`)
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"waves","when":{"calendar":{"at":"2026-06-01 12:01"}},"job_id":"echo-waves","target":{"groups":["canary"]},"rollout":{"strategy":"wave","waves":[{"group":"canary","delay":"0s"}]},"tz":"utc"}`)
	tr := followTrail(t, r.nc)
	r.poll(t, minute(1), "plain", "perpc", "waves")
	// Three records; Commands: commands.all, commands.pc.PC-A and -B,
	// commands.group.canary.
	recs := checkRecordedFirst(t, tr.take(t, 3+4))
	tr.none(t, r.nc)
	stored := schedulerRecords(t, r.n.JetStream(t))
	if len(stored) != 3 || len(recs) != 3 {
		t.Fatalf("scheduler records on AUDIT %+v, relayed %v: want one per fire", stored, recs)
	}
	scheds := map[string]bool{}
	for _, rec := range stored {
		var p struct {
			ExecID     string `json:"exec_id"`
			ScheduleID string `json:"schedule_id"`
		}
		json.Unmarshal(rec.Payload, &p)
		scheds[p.ScheduleID] = true
		if rec.Action != "exec" || rec.Target == nil || *rec.Target != jobs[p.ScheduleID] {
			t.Errorf("record %+v", rec)
		}
		if _, ok := recs[p.ExecID]; !ok {
			t.Errorf("stored record of exec %s was not relayed before its Commands", p.ExecID)
		}
	}
	if !scheds["plain"] || !scheds["perpc"] || !scheds["waves"] {
		t.Errorf("records name the schedules %v", scheds)
	}
}

// refuseRecords makes AUDIT refuse every new record (full, discarding
// new), or accept them again.
func refuseRecords(t *testing.T, js jetstream.JetStream, refuse bool) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, audit.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	cfg.MaxMsgs, cfg.Discard = -1, jetstream.DiscardOld
	if refuse {
		cfg.MaxMsgs, cfg.Discard = int64(max(info.State.Msgs, 1)), jetstream.DiscardNew
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// A fire whose record cannot be written does not publish: it retries the
// record while the tick may still fire (and fires once it is written),
// then gives up with an error in the log, Command unpublished.
func TestScheduledFireWithoutRecordDoesNotPublish(t *testing.T) {
	logs := newLogCapture()
	r := startRigWith(t, t0, 1, withRecorder(t, slog.New(logs)), "PC-A")
	js := r.n.JetStream(t)
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"retried","job_id":"echo","cron":"0 5 12 * * *","target":{"all":true}}`)
	mustCall(t, r.nc, "kanade.schedules.put", "", `{"id":"late","job_id":"echo","cron":"0 10 12 * * *","target":{"all":true}}`)
	cmds := subscribeCommands(t, r.nc, "commands.>")

	// AUDIT refuses records at the tick: retried, fired once it takes them.
	refuseRecords(t, js, true)
	r.clock.waitArmed(t, minute(5))
	r.clock.Set(minute(5))
	logs.wait(t, slog.LevelWarn, "retrying", map[string]string{"schedule": "retried"})
	cmds.none(t, r.nc)
	refuseRecords(t, js, false)
	c, _ := cmds.next(t)
	wantTick(t, c, "retried", minute(5))
	r.ticks.wait(t, minute(5), 1, "retried")
	if got := schedulerRecords(t, js); len(got) != 1 {
		t.Errorf("records %+v, want the retried fire's one", got)
	}

	// Refused until the tick may no longer fire.
	refuseRecords(t, js, true)
	r.clock.waitArmed(t, minute(10))
	r.clock.Set(minute(10))
	logs.wait(t, slog.LevelWarn, "retrying", map[string]string{"schedule": "late"})
	r.clock.Set(minute(10).Add(lateGrace + time.Second))
	execID, _ := TickIDs("late", minute(10))
	logs.wait(t, slog.LevelError, "tick not fired", map[string]string{"schedule": "late", "exec_id": execID})
	r.ticks.wait(t, minute(10), 1, "late")
	cmds.none(t, r.nc)
	if recs := executionRecords(t, js); len(recs) != 1 {
		t.Errorf("execution records %+v, want the retried fire's only", recs)
	}
	if got := schedulerRecords(t, js); len(got) != 1 {
		t.Errorf("records %+v, want the retried fire's one", got)
	}
}
