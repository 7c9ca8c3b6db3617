package scheduler

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
)

// lateGrace is how late the running engine may fire a tick it was waiting
// for (a busy machine, a GC pause) when starting_deadline is shorter.
// Ticks that passed while no engine ran follow starting_deadline alone.
const lateGrace = time.Minute

// EngineOptions configure the cron engine.
type EngineOptions struct {
	Schedules jetstream.KeyValue
	Jobs      jetstream.KeyValue
	JobCache  *Mirror[Manifest]   // optional: jobs without a round trip
	JS        jetstream.JetStream // optional: reads a job missing from JobCache at the leader
	Claims    jetstream.KeyValue
	Firer     *Firer
	DB        *store.DB    // completions and in-flight runs of reconcile schedules
	Marks     *Marks       // scheduler_dispatch; nil: no in-flight suppression
	Freeze    *FreezeWatch // fleet_config/freeze; nil: never frozen
	Clock     Clock
	Instance  string // unique per engine: who holds a claim
	Workers   int    // fires in flight at once
	Logger    *slog.Logger
	// Observe, when set, is called after each tick this engine handled
	// (fired, gated, polled or lost to another node).
	Observe func(schedule string, tick time.Time)
	// ProjectionReady, when set, tells whether DB is current enough to
	// decide a reconcile poll from. Until it is, this engine does not
	// claim per_pc and per_target polls, so a node still replaying its
	// projection (or holding a history gap) leaves the minute to a peer
	// instead of re-dispatching PCs whose successes it has not read yet.
	ProjectionReady func() bool
}

// Engine fires schedules on time. One goroutine owns the schedule table
// and a heap of next ticks and sleeps until the earliest; fires run in a
// bounded pool, in tick order per schedule.
type Engine struct {
	o   EngineOptions
	log *slog.Logger
	sem chan struct{}

	slots   map[string]*slot
	invalid map[string]uint64 // schedules that cannot be used -> the revision warned of
	queue   slotHeap
	claimed map[string]claimEntry // claims as read at start

	reqs    chan func() // run by the loop, which owns the table
	applied uint64      // the schedules bucket's last revision taken in

	comp     *Completions // reconcile schedules' view of the projection
	expCache expectedCache

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the loop and every drain
	synced chan struct{}
	catch  sync.WaitGroup // catch-up of the initial load
}

type claimEntry struct {
	rev   uint64
	state claimState
}

// slot is one schedule in the engine.
type slot struct {
	id      string
	c       *Compiled
	created time.Time // this revision's time: ticks before it were never due
	next    time.Time
	index   int // in the heap; -1 when not queued (disabled)

	mu      sync.Mutex
	pending []tickReq
	running bool
	gone    bool
	// Claim revision and tick last seen (under mu).
	claimRev  uint64
	claimTick time.Time
}

func (s *slot) claimPos() (uint64, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.claimRev, s.claimTick
}

func (s *slot) setClaim(rev uint64, tick time.Time) {
	s.mu.Lock()
	s.claimRev, s.claimTick = rev, tick
	s.mu.Unlock()
}

type tickReq struct {
	c       *Compiled
	tick    time.Time
	catchUp bool // a tick missed while no engine ran
	skip    bool // missed beyond starting_deadline: log it unless someone fired it
	initial *sync.WaitGroup
}

// StartEngine reads the claims, then watches the schedules bucket and
// fires until Stop.
func StartEngine(ctx context.Context, o EngineOptions) (*Engine, error) {
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Workers <= 0 {
		o.Workers = 128
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	e := &Engine{
		o: o, log: o.Logger, sem: make(chan struct{}, o.Workers),
		slots: map[string]*slot{}, invalid: map[string]uint64{}, claimed: map[string]claimEntry{}, synced: make(chan struct{}),
		reqs: make(chan func()), comp: newCompletions(o.DB, 0),
	}
	// Not at the leader: the claims bucket may have been created a moment
	// ago and have no leader yet, and a claim read from a lagging replica
	// only costs a lost compare-and-set later (claims.go).
	entries, err := listEntries(ctx, nil, o.Claims)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", BucketClaims, err)
	}
	for _, en := range entries {
		var st claimState
		if json.Unmarshal(en.Value(), &st) == nil {
			e.claimed[en.Key()] = claimEntry{rev: en.Revision(), state: st}
		}
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	w, err := o.Schedules.WatchAll(e.ctx)
	if err != nil {
		e.cancel()
		return nil, fmt.Errorf("watch %s: %w", "schedules", err)
	}
	e.wg.Add(1)
	go e.run(w)
	return e, nil
}

// Synced is closed once the schedules present at start are loaded and the
// ticks they missed are caught up (or logged as skipped).
func (e *Engine) Synced() <-chan struct{} { return e.synced }

// Stop stops firing and waits for fires in flight.
func (e *Engine) Stop() {
	e.cancel()
	e.wg.Wait()
}

func (e *Engine) run(w jetstream.KeyWatcher) {
	defer e.wg.Done()
	defer func() { w.Stop() }()
	initial := true
	var timer Timer
	for {
		var tc <-chan time.Time
		if len(e.queue) > 0 {
			timer = e.o.Clock.NewTimer(e.queue[0].next.Sub(e.o.Clock.Now()))
			tc = timer.C()
		}
		select {
		case <-e.ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case en, ok := <-w.Updates():
			if !ok {
				// The watcher recovers from disconnects by itself; a
				// closed channel means it gave up: start another.
				e.log.Warn("schedules watcher closed; restarting")
				nw, err := e.rewatch()
				if err != nil {
					return
				}
				w = nw
				break
			}
			now := e.o.Clock.Now()
			e.fireDue(now)
			if en == nil {
				if initial {
					initial = false
					e.claimed = nil
					e.wg.Add(1)
					go func() {
						defer e.wg.Done()
						e.catch.Wait()
						close(e.synced)
					}()
				}
				break
			}
			e.apply(en, now, initial)
			e.applied = max(e.applied, en.Revision())
		case <-tc:
			e.fireDue(e.o.Clock.Now())
		case fn := <-e.reqs:
			fn()
		}
		if timer != nil {
			timer.Stop()
			timer = nil
		}
	}
}

// Upcoming lists the next tick of every enabled schedule, soonest first,
// at most limit (default 50), from the engine's own table. It first waits
// (briefly) until the engine has taken in the bucket as it is now, so a
// schedule just written is in the answer.
func (e *Engine) Upcoming(ctx context.Context, limit int) ([]Upcoming, error) {
	if limit < 0 {
		return nil, api.BadRequest("limit must not be negative")
	}
	if limit == 0 {
		limit = 50
	}
	st, err := e.o.Schedules.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("schedules status: %w", err)
	}
	var want uint64
	if kst, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		want = kst.StreamInfo().State.LastSeq
	}
	// The engine normally catches up within milliseconds; if it does not
	// (a watcher reconnecting), its table is still the best answer.
	give := time.Now().Add(2 * time.Second)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		var out []Upcoming
		var applied uint64
		late := time.Now().After(give)
		done := make(chan struct{})
		fn := func() {
			defer close(done)
			applied = e.applied
			if applied < want && !late {
				return
			}
			// Discrete fires only (calendar and cron), as upstream lists
			// them: a reconcile poll every minute is not an upcoming run.
			// Each at its next fire that passes its gates (active, window,
			// skip dates), as upstream's preview finds it.
			type up struct {
				s    *slot
				next time.Time
			}
			var slots []up
			now := e.o.Clock.Now()
			for _, s := range e.queue {
				if s.c.Mode != ModeTick {
					continue
				}
				next := s.next
				if s.c.Gates.blocked(next) != "" {
					f := s.c.fires(now, 1)
					if len(f) == 0 {
						continue
					}
					next, _ = time.Parse(time.RFC3339, f[0])
				}
				slots = append(slots, up{s, next})
			}
			slices.SortFunc(slots, func(a, b up) int {
				if c := a.next.Compare(b.next); c != 0 {
					return c
				}
				return strings.Compare(a.s.id, b.s.id)
			})
			out = make([]Upcoming, 0, min(limit, len(slots)))
			for _, u := range slots[:min(limit, len(slots))] {
				out = append(out, Upcoming{ID: u.s.id, JobID: u.s.c.JobID, When: u.s.c.Display(), NextRun: u.next.UTC().Format(time.RFC3339)})
			}
		}
		select {
		case e.reqs <- fn:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-e.ctx.Done():
			return nil, api.Unavailable("scheduler is stopping")
		}
		<-done
		if applied >= want || late {
			return out, nil
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (e *Engine) rewatch() (jetstream.KeyWatcher, error) {
	for {
		select {
		case <-e.ctx.Done():
			return nil, e.ctx.Err()
		case <-time.After(time.Second):
		}
		w, err := e.o.Schedules.WatchAll(e.ctx)
		if err == nil {
			return w, nil
		}
		e.log.Warn("watch schedules", "err", err)
	}
}

// apply takes one change of the schedules bucket into the table.
func (e *Engine) apply(en jetstream.KeyValueEntry, now time.Time, initial bool) {
	id := en.Key()
	s := e.slots[id]
	if en.Operation() != jetstream.KeyValuePut {
		delete(e.invalid, id)
		if s != nil {
			e.remove(s)
			e.log.Info("schedule deleted", "schedule", id)
			if rev, _ := s.claimPos(); rev > 0 {
				e.dropClaim(id, rev)
			}
		}
		return
	}
	sched, err := decodeStored(en.Value())
	var c *Compiled
	if err == nil {
		c, err = sched.Compile()
	}
	if err != nil {
		// Warn once per revision: a re-watch replays the bucket. The
		// schedules list shows the same reason (ListSchedulesChecked).
		if e.invalid[id] != en.Revision() {
			e.invalid[id] = en.Revision()
			e.log.Warn("schedule not firing: it cannot be used", "schedule", id, "revision", en.Revision(), "err", err)
		}
		if s != nil {
			e.remove(s)
		}
		return
	}
	delete(e.invalid, id)
	c.Raw = nil // the engine needs the parsed fields only
	if s == nil {
		s = &slot{id: id, index: -1}
		if ce, ok := e.claimed[id]; ok {
			s.setClaim(ce.rev, ce.state.Tick)
		}
		e.slots[id] = s
	}
	s.c, s.created = c, en.Created()
	if !c.IsEnabled() {
		e.unqueue(s)
		e.log.Debug("schedule disabled", "schedule", id)
		return
	}
	if c.Mode == ModeAgent {
		// The agents tick it themselves; firing it here too would run
		// it twice.
		e.unqueue(s)
		e.log.Debug("schedule runs on the agents; not ticked here", "schedule", id)
		return
	}
	s.next = c.Spec.Next(now)
	switch {
	case s.next.IsZero():
		e.unqueue(s)
	case s.index >= 0:
		heap.Fix(&e.queue, s.index)
	default:
		heap.Push(&e.queue, s)
	}
	e.log.Debug("schedule loaded", "schedule", id, "next", s.next)
	if cs, ok := c.Spec.(*calendarSpec); ok {
		// Upstream's registration warnings; the schedule stays loaded.
		switch {
		case cs.oneShot && s.next.IsZero() && now.Sub(cs.Prev(now)) > c.Deadline:
			e.log.Warn("schedule will not fire: a one-shot in the past", "schedule", id, "at", c.When.Calendar.At)
		case c.Gates.window != nil && !c.Gates.window.contains(cs.hour*60+cs.min):
			e.log.Warn("schedule will never fire: its calendar time is outside constraints.window", "schedule", id,
				"at", c.When.Calendar.At, "window", c.Constraints.Window)
		}
	}
	e.checkMissed(s, now, initial)
}

// unqueue takes s out of the heap, if it is in.
func (e *Engine) unqueue(s *slot) {
	if s.index >= 0 {
		heap.Remove(&e.queue, s.index)
	}
}

func (e *Engine) remove(s *slot) {
	e.unqueue(s)
	delete(e.slots, s.id)
	s.mu.Lock()
	s.gone = true
	s.mu.Unlock()
}

// checkMissed handles the last tick before now that fell after this
// revision of the schedule and after the last claimed tick: it was missed
// while no engine ran. Within starting_deadline it fires once; beyond, it
// is logged.
func (e *Engine) checkMissed(s *slot, now time.Time, initial bool) {
	if s.c.Mode != ModeTick {
		return // a poll missed is covered by the next one
	}
	_, last := s.claimPos()
	lower := s.created
	if last.After(lower) {
		lower = last
	}
	// One Next call settles the usual case, no tick since: a Prev search
	// for each of thousands of schedules at start is not free.
	if first := s.c.Spec.Next(lower); first.IsZero() || first.After(now) {
		return
	}
	p := s.c.Spec.Prev(now)
	if p.IsZero() || !p.After(lower) {
		return
	}
	r := tickReq{c: s.c, tick: p, catchUp: true}
	if s.c.Deadline <= 0 || now.Sub(p) > s.c.Deadline {
		r = tickReq{c: s.c, tick: p, skip: true}
	}
	if initial {
		e.catch.Add(1)
		r.initial = &e.catch
	}
	e.enqueue(s, r)
}

// fireDue hands every tick that is due to the pool and moves the
// schedules on to their next tick.
func (e *Engine) fireDue(now time.Time) {
	for len(e.queue) > 0 && !e.queue[0].next.After(now) {
		s := e.queue[0]
		tick := s.next
		grace := max(s.c.Deadline, lateGrace)
		if now.Sub(tick) > grace {
			// The engine itself was stalled (a suspended machine): the
			// ticks up to the last one before now were missed.
			last := s.c.Spec.Prev(now)
			level := slog.LevelWarn
			if s.c.Mode != ModeTick {
				level = slog.LevelDebug // a poll: the next one covers it
			}
			e.log.Log(e.ctx, level, "missed ticks not fired: the engine was stalled", "schedule", s.id,
				"first", tick, "last", last)
			s.next = s.c.Spec.Next(now)
		} else {
			e.enqueue(s, tickReq{c: s.c, tick: tick})
			s.next = s.c.Spec.Next(tick)
		}
		if s.next.IsZero() {
			heap.Remove(&e.queue, s.index)
		} else {
			heap.Fix(&e.queue, s.index)
		}
	}
}

// enqueue queues a tick of s; one drain per slot keeps them in order.
func (e *Engine) enqueue(s *slot, r tickReq) {
	s.mu.Lock()
	s.pending = append(s.pending, r)
	if s.running {
		s.mu.Unlock()
		return
	}
	s.running = true
	s.mu.Unlock()
	e.wg.Add(1)
	go e.drain(s)
}

func (e *Engine) drain(s *slot) {
	defer e.wg.Done()
	for {
		s.mu.Lock()
		if len(s.pending) == 0 || e.ctx.Err() != nil {
			for _, r := range s.pending {
				if r.initial != nil {
					r.initial.Done()
				}
			}
			s.pending, s.running = nil, false
			s.mu.Unlock()
			return
		}
		r := s.pending[0]
		s.pending = s.pending[1:]
		gone := s.gone
		s.mu.Unlock()
		if !gone {
			select {
			case e.sem <- struct{}{}:
				e.handle(s, r)
				<-e.sem
				if e.o.Observe != nil {
					e.o.Observe(s.id, r.tick)
				}
			case <-e.ctx.Done():
			}
		}
		if r.initial != nil {
			r.initial.Done()
		}
	}
}

// handle claims a tick and, if this engine won it, publishes it.
func (e *Engine) handle(s *slot, r tickReq) {
	log := e.log.With("schedule", s.id, "tick", r.tick.UTC())
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if r.skip {
		// Someone may have fired it after all (another node that ran).
		if st, err := e.readClaim(ctx, s); err == nil && !st.Before(r.tick) {
			return
		}
		log.Warn("missed tick not fired: beyond starting_deadline", "starting_deadline", r.c.Deadline)
		return
	}
	if (r.c.Mode == ModePerPC || r.c.Mode == ModePerTarget) && e.o.ProjectionReady != nil && !e.o.ProjectionReady() {
		log.Info("poll left to another node: this node's projection is not current")
		return
	}
	execID, requestID := TickIDs(s.id, r.tick)
	var won bool
	err := e.retry(ctx, r, func() (err error) {
		won, err = e.claim(ctx, s, r.tick, execID)
		return err
	})
	if err != nil {
		log.Error("claim tick", "err", err)
		return
	}
	if !won {
		log.Debug("tick fired by another node")
		return
	}
	if frozen, why := e.o.Freeze.Frozen(e.o.Clock.Now()); frozen {
		log.Info("tick not fired: the fleet is frozen", "reason", why)
		return
	}
	if why := r.c.Gates.blocked(r.tick); why != "" {
		log.Debug("tick not fired: " + why)
		return
	}
	m, ok := e.o.JobCache.Get(r.c.JobID)
	if !ok {
		// Not mirrored (yet): ask the bucket.
		err = e.retry(ctx, r, func() error {
			// From the leader: a job put a moment ago may not have
			// reached this node's replica, and the tick is ours alone.
			en, err := readKey(ctx, e.o.JS, e.o.Jobs, r.c.JobID)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return errJobGone
			}
			if err != nil {
				return err
			}
			return json.Unmarshal(en.value, &m)
		})
		if err != nil {
			log.Error("tick not fired: read job", "job_id", r.c.JobID, "err", err)
			return
		}
	}
	if r.c.Mode == ModePerPC || r.c.Mode == ModePerTarget {
		e.poll(ctx, s, r, m, log)
		return
	}
	if len(r.c.Waves) > 0 {
		e.fireWaves(ctx, s, r, m, log)
		return
	}
	f := Fire{
		ExecID: execID, RequestID: requestID, Job: m, Target: r.c.Target, Jitter: r.c.Jitter,
		InitiatedBy: "schedule:" + s.id, InitiatedAt: r.tick, Retry: r.c.Retry,
	}
	if r.c.Deadline > 0 {
		d := r.tick.Add(r.c.Deadline)
		f.DeadlineAt = &d
	}
	if err := e.fire(ctx, s, r, f); err != nil {
		log.Error("tick not fired", "exec_id", execID, "err", err)
		return
	}
	if r.catchUp {
		log.Info("missed tick fired late, within starting_deadline", "exec_id", execID, "deadline_at", f.DeadlineAt)
	} else {
		log.Debug("tick fired", "exec_id", execID)
	}
}

var errJobGone = errors.New("job not found")

// auditWait bounds one attempt at a fire's audit record.
const auditWait = 5 * time.Second

// fire records a scheduled fire on the audit trail (actor "scheduler",
// action "exec", target the job, as upstream's), then publishes it, each
// retried while the tick may still fire. A record that cannot be written
// stops the fire: no Command goes out without its record.
func (e *Engine) fire(ctx context.Context, s *slot, r tickReq, f Fire) error {
	if aud := e.o.Firer.Audit; aud != nil {
		payload, _ := json.Marshal(map[string]any{"exec_id": f.ExecID, "schedule_id": s.id, "version": f.Job.Version, "target": f.Target})
		entry := api.Entry{Actor: "scheduler", Action: "exec", Target: f.Job.ID, Payload: payload}
		err := e.retry(ctx, r, func() error {
			// Bounded per attempt: a trail that does not answer is retried,
			// not waited on for the whole tick.
			actx, cancel := context.WithTimeout(ctx, auditWait)
			defer cancel()
			return aud.Record(actx, entry)
		})
		if err != nil {
			return fmt.Errorf("audit record: %w", err)
		}
	}
	// The ids are derived from the tick, so publishing again after an
	// error is safe: the streams drop the repeat.
	err := e.retry(ctx, r, func() error {
		_, err := e.o.Firer.Publish(ctx, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// retry runs fn until it succeeds, the job is gone, or the tick is too
// late to fire.
func (e *Engine) retry(ctx context.Context, r tickReq, fn func() error) error {
	limit := r.tick.Add(max(r.c.Deadline, lateGrace))
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := fn()
		if err == nil || errors.Is(err, errJobGone) || ctx.Err() != nil || e.o.Clock.Now().Add(wait).After(limit) {
			return err
		}
		e.log.Warn("scheduler: retrying", "schedule", r.c.ID, "tick", r.tick, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// slotHeap orders enabled schedules by next tick.
type slotHeap []*slot

func (h slotHeap) Len() int           { return len(h) }
func (h slotHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h slotHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *slotHeap) Push(x any) {
	s := x.(*slot)
	s.index = len(*h)
	*h = append(*h, s)
}
func (h *slotHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	s.index = -1
	*h = old[:len(old)-1]
	return s
}
