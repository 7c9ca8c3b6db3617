package scheduler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/kvwatch"
	"github.com/kanade-go/kanade/store"
)

// The reconcile shapes (per_pc, per_target): a poll every minute that
// fires where the fleet is behind. Completions come from the projection
// (execution_results, keyed by job_id as upstream keys them, so an ad-hoc
// exec of the job and an agent's own fires count too); in-flight
// dispatches are marked in KV scheduler_dispatch with upstream's keys,
// values and window. This backend takes each mark with a compare-and-set,
// so of several nodes only one dispatches a PC inside the window, and each
// poll minute is claimed in schedule_claims like any tick.

// BucketDispatch holds the in-flight dispatch marks.
const BucketDispatch = "scheduler_dispatch"

// pcMarkKey is upstream's per-PC mark key: lengths make it injective.
func pcMarkKey(scheduleID, pc string) string {
	return "pc." + strconv.Itoa(len(scheduleID)) + "." + scheduleID + "." + strconv.Itoa(len(pc)) + "." + pc
}

// targetMarkKey is upstream's per-target mark key.
func targetMarkKey(scheduleID string) string {
	return "target." + strconv.Itoa(len(scheduleID)) + "." + scheduleID
}

// markValue is the dispatch instant as chrono's to_rfc3339 writes it.
func markValue(t time.Time) []byte {
	return []byte(t.UTC().Format("2006-01-02T15:04:05.999999999-07:00"))
}

// dispatchWindow is upstream's suppression window: clamp(jitter + timeout
// + 90 s, 90 s, 30 min), plus the retry budget after the clamp.
func dispatchWindow(c *Compiled, m Manifest) time.Duration {
	timeout, _ := m.Execute.Timeout.Duration()
	plain := min(max(c.Jitter+timeout+90*time.Second, 90*time.Second), 30*time.Minute)
	if c.Retry != nil {
		plain += time.Duration(c.Retry.Max) * (timeout + time.Duration(c.Retry.BackoffSecs)*time.Second)
	}
	return plain
}

type mark struct {
	at  time.Time // zero: unparseable, counts as no mark
	rev uint64
}

// Marks mirrors scheduler_dispatch and takes marks by compare-and-set.
// The mirror is indexed by schedule (a poll reads its own marks only), and
// marks older than the bucket's max age are forgotten as polls pass them.
type Marks struct {
	kv jetstream.KeyValue
	mu sync.RWMutex
	by map[string]map[string]mark // schedule id -> pc ("" for the target mark) -> mark
}

// markMaxAge is the bucket's max age: a mark older is gone from KV.
const markMaxAge = time.Hour

// parseMarkKey splits pc.<n>.<schedule>.<m>.<pc> or target.<n>.<schedule>.
func parseMarkKey(key string) (schedule, pc string, ok bool) {
	take := func(s string) (string, string, bool) {
		ns, rest, found := strings.Cut(s, ".")
		n, err := strconv.Atoi(ns)
		if !found || err != nil || n < 0 || n > len(rest) {
			return "", "", false
		}
		return rest[:n], rest[n:], true
	}
	if rest, isPC := strings.CutPrefix(key, "pc."); isPC {
		sid, rest, ok := take(rest)
		if !ok || !strings.HasPrefix(rest, ".") {
			return "", "", false
		}
		pc, rest, ok := take(rest[1:])
		return sid, pc, ok && rest == "" && pc != ""
	}
	if rest, isTarget := strings.CutPrefix(key, "target."); isTarget {
		sid, rest, ok := take(rest)
		return sid, "", ok && rest == ""
	}
	return "", "", false
}

// prune forgets the marks KV has dropped by max age.
func (mk *Marks) prune(now time.Time) {
	mk.mu.Lock()
	defer mk.mu.Unlock()
	for sid, per := range mk.by {
		for pc, m := range per {
			if now.Sub(m.at) >= markMaxAge {
				delete(per, pc)
			}
		}
		if len(per) == 0 {
			delete(mk.by, sid)
		}
	}
}

// set records a mark unless the mirror has a newer revision.
func (mk *Marks) set(key string, m mark) {
	sid, pc, ok := parseMarkKey(key)
	if !ok {
		return
	}
	mk.mu.Lock()
	defer mk.mu.Unlock()
	per := mk.by[sid]
	if per == nil {
		per = map[string]mark{}
		mk.by[sid] = per
	}
	if cur, had := per[pc]; !had || m.rev > cur.rev {
		per[pc] = m
	}
}

func (mk *Marks) forget(key string) {
	sid, pc, ok := parseMarkKey(key)
	if !ok {
		return
	}
	mk.mu.Lock()
	defer mk.mu.Unlock()
	if per := mk.by[sid]; per != nil {
		delete(per, pc)
		if len(per) == 0 {
			delete(mk.by, sid)
		}
	}
}

// WatchMarks mirrors kv until ctx ends; every 10 minutes it forgets the
// marks older than the bucket's max age (by now), which KV drops without
// a notice to watchers.
func WatchMarks(ctx context.Context, kv jetstream.KeyValue, wg *sync.WaitGroup, log *slog.Logger, now func() time.Time) (*Marks, error) {
	mk := &Marks{kv: kv, by: map[string]map[string]mark{}}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := kvwatch.Follow(wctx, ctx, kv, wg, log, func(e jetstream.KeyValueEntry) {
		if e.Operation() == jetstream.KeyValuePut {
			mk.set(e.Key(), mark{at: parseMark(e.Value()), rev: e.Revision()})
		} else {
			mk.forget(e.Key())
		}
	})
	if err != nil {
		return nil, err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		prune := time.NewTicker(10 * time.Minute)
		defer prune.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-prune.C:
				mk.prune(now())
			}
		}
	}()
	return mk, nil
}

func parseMark(v []byte) time.Time {
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(v)))
	if err != nil {
		return time.Time{}
	}
	return t
}

func (mk *Marks) get(key string) (mark, bool) {
	if mk == nil {
		return mark{}, false
	}
	sid, pc, ok := parseMarkKey(key)
	if !ok {
		return mark{}, false
	}
	mk.mu.RLock()
	defer mk.mu.RUnlock()
	m, ok := mk.by[sid][pc]
	return m, ok
}

// take writes a mark at now for key unless a live one holds it: live means
// written less than window before now and not ended (ended reports whether
// a run that finished after the mark ended it). A lost compare-and-set
// re-reads the key; false means someone else holds it.
func (mk *Marks) take(ctx context.Context, key string, now time.Time, window time.Duration, ended func(time.Time) bool) (bool, error) {
	if mk == nil {
		return true, nil
	}
	cur, ok := mk.get(key)
	for range 4 {
		if ok && !cur.at.IsZero() && now.Sub(cur.at) < window && !ended(cur.at) {
			return false, nil
		}
		var rev uint64
		var err error
		if ok {
			rev, err = mk.kv.Update(ctx, key, markValue(now), cur.rev)
		} else {
			rev, err = mk.kv.Create(ctx, key, markValue(now))
		}
		if err == nil {
			mk.set(key, mark{at: now, rev: rev})
			return true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !strings.Contains(err.Error(), "wrong last sequence") {
			return false, err
		}
		en, gerr := mk.kv.Get(ctx, key)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			ok = false
		case gerr != nil:
			return false, gerr
		default:
			cur, ok = mark{at: parseMark(en.Value()), rev: en.Revision()}, true
		}
	}
	return false, nil
}

// drop removes marks this node took for a dispatch that failed.
func (mk *Marks) drop(ctx context.Context, keys []string) {
	if mk == nil {
		return
	}
	for _, k := range keys {
		if m, ok := mk.get(k); ok {
			mk.kv.Delete(ctx, k, jetstream.LastRevision(m.rev))
		}
	}
}

// live lists the PCs of a schedule whose marks are live at now.
func (mk *Marks) live(scheduleID string, now time.Time, window time.Duration, ended func(pc string, at time.Time) bool) map[string]bool {
	out := map[string]bool{}
	if mk == nil {
		return out
	}
	mk.mu.Lock()
	defer mk.mu.Unlock()
	per := mk.by[scheduleID]
	for pc, m := range per {
		if pc == "" {
			continue // the target mark
		}
		if now.Sub(m.at) >= markMaxAge {
			delete(per, pc) // gone from KV too
			continue
		}
		if m.at.IsZero() || now.Sub(m.at) >= window {
			continue
		}
		if !ended(pc, m.at) {
			out[pc] = true
		}
	}
	return out
}

// pcRuns is what the projection says of one PC's runs of a job.
type pcRuns struct {
	lastOK   time.Time // latest finished with exit 0 (of the version, for once_per_version)
	lastDone time.Time // latest finished, whatever the outcome
	running  bool      // a row still without finished_at
}

// jobRuns reads, per PC, the runs of job from execution_results: one
// grouped scan of the job's rows. version, when set, restricts successes
// to that manifest version (once_per_version). now is the poll instant
// (see eachJobRun).
func jobRuns(ctx context.Context, db *store.DB, job, version string, now time.Time) (*JobRuns, error) {
	out := &JobRuns{m: map[string]pcRuns{}}
	err := eachJobRun(ctx, db, job, version, now, func(pc string, r pcRuns) { out.m[pc] = r })
	return out, err
}

// finishedAsOf is a row's finished_at as the scheduler counts it at the
// poll instant (the argument): the agent reports finished_at, and a clock
// ahead (or a hostile agent) can put it in the future, where a cooldown
// measured from it would never elapse. A finish after the poll instant
// counts as when the backend recorded the run (recorded_at, the stream's
// publish time), never later than reported.
const finishedAsOf = `CASE WHEN finished_at > ? THEN MIN(finished_at, recorded_at) ELSE finished_at END`

// clampFinished is finishedAsOf on values read.
func clampFinished(finished, recorded sql.NullString, now time.Time) (time.Time, bool) {
	if !finished.Valid {
		return time.Time{}, false
	}
	t, err := store.ParseTime(finished.String)
	if err != nil {
		return time.Time{}, false
	}
	if t.After(now) && recorded.Valid {
		if r, err := store.ParseTime(recorded.String); err == nil && r.Before(t) {
			t = r
		}
	}
	return t, true
}

// eachJobRun is jobRuns' scan, one call per PC.
func eachJobRun(ctx context.Context, db *store.DB, job, version string, now time.Time, fn func(string, pcRuns)) error {
	if db == nil {
		return nil
	}
	at := store.FormatTime(now)
	rows, err := db.R.QueryContext(ctx, `SELECT pc_id,
			MAX(CASE WHEN exit_code = 0 AND (? = '' OR version = ?) THEN `+finishedAsOf+` END),
			MAX(`+finishedAsOf+`),
			MAX(finished_at IS NULL)
		FROM execution_results WHERE job_id = ? GROUP BY pc_id`, version, version, at, at, job)
	if err != nil {
		return fmt.Errorf("completions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var pc string
		var ok, done sql.NullString
		var running sql.NullInt64
		if err := rows.Scan(&pc, &ok, &done, &running); err != nil {
			return fmt.Errorf("completions: %w", err)
		}
		var r pcRuns
		if ok.Valid {
			r.lastOK, _ = store.ParseTime(ok.String)
		}
		if done.Valid {
			r.lastDone, _ = store.ParseTime(done.String)
		}
		r.running = running.Int64 == 1
		fn(pc, r)
	}
	return rows.Err()
}

// armed is upstream's re-arm rule: no success, or (with a cooldown) the
// last one at least cooldown ago.
func armed(last time.Time, cooldown time.Duration, now time.Time) bool {
	return last.IsZero() || cooldown > 0 && now.Sub(last) >= cooldown
}

// reconcile is one poll of a per_pc or per_target schedule, at the tick
// this engine claimed. It returns the fire to publish (nil: nothing to do)
// and the marks taken for it.
func (e *Engine) reconcile(ctx context.Context, s *slot, r tickReq, m Manifest, log *slog.Logger) (*Fire, []string, error) {
	c, now := r.c, r.tick
	if e.o.DB == nil {
		// Without the projection every PC looks never done: firing would
		// repeat at each window's end.
		log.Warn("poll skipped: this node has no projection to read completions from")
		return nil, nil, nil
	}
	agents := e.o.Firer.Agents
	expected := e.expected(ctx, c.Target, now)
	if len(expected) == 0 {
		log.Debug("poll: no expected PC")
		return nil, nil, nil
	}
	version := ""
	if c.PerVersion {
		version = m.Version
	}
	runs, err := e.comp.Runs(ctx, c.JobID, version, now)
	if err != nil {
		return nil, nil, err
	}
	window := dispatchWindow(c, m)
	ended := func(pc string, at time.Time) bool {
		d := runs.Get(pc).lastDone
		return !d.IsZero() && !d.Before(at)
	}
	if c.Mode == ModePerTarget {
		roster, err := agents.FullRoster(ctx, c.Target)
		if err != nil {
			return nil, nil, err
		}
		var latest time.Time
		for _, pc := range roster {
			if t := runs.Get(pc).lastOK; t.After(latest) {
				latest = t
			}
		}
		if !armed(latest, c.Cooldown, now) {
			return nil, nil, nil
		}
		key := targetMarkKey(s.id)
		// The target's mark holds for its whole window, as upstream's: one
		// member's early failure must not re-fire the target while the
		// others still wait out their jitter.
		won, err := e.o.Marks.take(ctx, key, now, window, func(time.Time) bool { return false })
		if err != nil || !won {
			return nil, nil, err
		}
		return e.reconcileFire(s, r, m, c.Target), []string{key}, nil
	}
	var eligible []string
	for _, pc := range expected {
		if armed(runs.Get(pc).lastOK, c.Cooldown, now) {
			eligible = append(eligible, pc)
		}
	}
	live := e.o.Marks.live(s.id, now, window, ended)
	kept := eligible[:0]
	for _, pc := range eligible {
		if !live[pc] {
			kept = append(kept, pc)
		}
	}
	eligible = kept
	if len(eligible) == 0 {
		return nil, nil, nil
	}
	if c.MaxConc > 0 {
		// In flight: the projection's unfinished rows of the job (any
		// exec), and this schedule's live marks whose run has not shown
		// up yet (upstream counts rows only, and overshoots while Commands
		// wait out their jitter).
		inflight := map[string]bool{}
		runs.EachRunning(func(pc string) { inflight[pc] = true })
		for pc := range live {
			inflight[pc] = true
		}
		slots := max(c.MaxConc-len(inflight), 0)
		if slots == 0 {
			log.Debug("poll: max_concurrent reached", "in_flight", len(inflight))
			return nil, nil, nil
		}
		eligible = eligible[:min(slots, len(eligible))]
	}
	taken := e.takeMarks(ctx, s.id, eligible, now, window, ended)
	if len(taken) == 0 {
		return nil, nil, nil
	}
	keys := make([]string, len(taken))
	for i, pc := range taken {
		keys[i] = pcMarkKey(s.id, pc)
	}
	return e.reconcileFire(s, r, m, Target{PCs: taken}), keys, nil
}

// takeMarks takes the marks of pcs, 16 at a time; it returns the PCs won,
// in order.
func (e *Engine) takeMarks(ctx context.Context, id string, pcs []string, now time.Time, window time.Duration, ended func(string, time.Time) bool) []string {
	won := make([]bool, len(pcs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, pc := range pcs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ok, err := e.o.Marks.take(ctx, pcMarkKey(id, pc), now, window, func(at time.Time) bool { return ended(pc, at) })
			if err != nil {
				e.log.Warn("dispatch mark", "schedule", id, "pc", pc, "err", err)
			}
			won[i] = ok
		}()
	}
	wg.Wait()
	var out []string
	for i, pc := range pcs {
		if won[i] {
			out = append(out, pc)
		}
	}
	return out
}

// reconcileFire is the fire of a poll: per_pc drops the rollout and
// targets the PCs; per_target keeps the target as written.
func (e *Engine) reconcileFire(s *slot, r tickReq, m Manifest, t Target) *Fire {
	execID, requestID := TickIDs(s.id, r.tick)
	f := &Fire{
		ExecID: execID, RequestID: requestID, Job: m, Target: t, Jitter: r.c.Jitter,
		InitiatedBy: "schedule:" + s.id, InitiatedAt: r.tick, Retry: r.c.Retry,
	}
	if r.c.Deadline > 0 {
		d := r.tick.Add(r.c.Deadline)
		f.DeadlineAt = &d
	}
	return f
}

// poll runs one reconcile poll and publishes what it decided.
func (e *Engine) poll(ctx context.Context, s *slot, r tickReq, m Manifest, log *slog.Logger) {
	f, keys, err := e.reconcile(ctx, s, r, m, log)
	if err != nil {
		log.Error("poll failed", "err", err)
		return
	}
	if f == nil {
		return
	}
	if r.c.Mode == ModePerTarget && len(r.c.Waves) > 0 {
		// The whole target, as the plan is written: its waves.
		e.fireWaves(ctx, s, r, m, log)
		return
	}
	// A large dispatch goes out as several executions, each a bounded
	// target (the execution record carries its PC list, and must fit a
	// message). The first keeps the tick's ids.
	fires := []Fire{*f}
	if pcs := f.Target.PCs; len(pcs) > pollChunk {
		fires = fires[:0]
		for k := 0; k*pollChunk < len(pcs); k++ {
			part := *f
			part.Target = Target{PCs: pcs[k*pollChunk : min((k+1)*pollChunk, len(pcs))]}
			if k > 0 {
				part.ExecID, part.RequestID = TickIDs(s.id+"/"+strconv.Itoa(k), r.tick)
			}
			fires = append(fires, part)
		}
	}
	for _, fire := range fires {
		if err := e.fire(ctx, s, r, fire); err != nil {
			log.Error("poll not dispatched", "exec_id", fire.ExecID, "err", err)
			undone := keys // per_target: its one mark
			if r.c.Mode == ModePerPC {
				undone = undone[:0:0]
				for _, pc := range fire.Target.PCs {
					undone = append(undone, pcMarkKey(s.id, pc))
				}
			}
			e.o.Marks.drop(context.WithoutCancel(ctx), undone)
			continue
		}
		log.Info("poll dispatched", "exec_id", fire.ExecID, "pcs", len(fire.Target.PCs))
	}
}

// pollChunk bounds the PCs of one execution a poll publishes.
const pollChunk = 2000

// fireWaves publishes a rollout: each wave to its group, delay after the
// tick. A delayed wave waits in memory, as upstream's does: a restart in
// between loses it.
func (e *Engine) fireWaves(ctx context.Context, s *slot, r tickReq, m Manifest, log *slog.Logger) {
	for i, w := range r.c.Waves {
		execID, requestID := TickIDs(s.id+"/wave/"+strconv.Itoa(i), r.tick)
		f := Fire{
			ExecID: execID, RequestID: requestID, Job: m, Target: Target{Groups: []string{w.Group}}, Jitter: r.c.Jitter,
			InitiatedBy: "schedule:" + s.id, InitiatedAt: r.tick, Retry: r.c.Retry,
		}
		if r.c.Deadline > 0 {
			d := r.tick.Add(r.c.Deadline)
			f.DeadlineAt = &d
		}
		publish := func(ctx context.Context) {
			if err := e.fire(ctx, s, r, f); err != nil {
				log.Error("wave not fired", "wave", i, "group", w.Group, "err", err)
				return
			}
			log.Debug("wave fired", "wave", i, "group", w.Group, "exec_id", f.ExecID)
		}
		at := r.tick.Add(w.Delay)
		if !at.After(e.o.Clock.Now()) {
			publish(ctx)
			continue
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			t := e.o.Clock.NewTimer(at.Sub(e.o.Clock.Now()))
			defer t.Stop()
			select {
			case <-t.C():
				pctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
				defer cancel()
				publish(pctx)
			case <-e.ctx.Done():
			}
		}()
	}
}

// expectedCache shares a poll minute's resolution of each distinct target
// among the schedules that name it (it costs work per alive agent: a set
// and a sort, and a membership lookup for groups); the first poll to ask
// resolves it while the others wait.
type expectedCache struct {
	mu  sync.Mutex
	at  time.Time
	got map[string]*expectedEntry
}

type expectedEntry struct {
	once sync.Once
	pcs  []string
}

// expected is AgentCounter.Expected, once per target per poll instant.
func (e *Engine) expected(ctx context.Context, t Target, now time.Time) []string {
	if !t.All && len(t.Groups) == 0 {
		return e.o.Firer.Agents.Expected(ctx, t) // pcs verbatim: nothing to share
	}
	key := strings.Join(t.Groups, "\x00") + "\x01" + strings.Join(t.PCs, "\x00")
	if t.All {
		key = "all\x01" + key
	}
	ec := &e.expCache
	ec.mu.Lock()
	if !ec.at.Equal(now) {
		ec.at, ec.got = now, map[string]*expectedEntry{}
	}
	en := ec.got[key]
	if en == nil {
		en = &expectedEntry{}
		ec.got[key] = en
	}
	ec.mu.Unlock()
	en.once.Do(func() { en.pcs = e.o.Firer.Agents.Expected(ctx, t) })
	return en.pcs
}
