package groups

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/kvwatch"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// AliveWithin is upstream's ALIVE_THRESHOLD: an agent whose last heartbeat
// is at most this old is online.
const AliveWithin = 2 * time.Minute

// Roster is the one answer to "which PCs does this target mean": the
// effective membership (agent_groups ∪ agent_groups_derived, as agents
// compute theirs), kept current by KV watchers, and the alive agents from
// the projection. Exec, schedules and the groups overview all read it.
type Roster struct {
	DB  *store.DB // nil: no agent is known to be alive
	Now func() time.Time
	Log *slog.Logger

	mu      sync.RWMutex
	manual  map[string][]string // pc -> groups, agent_groups
	derived map[string][]string // pc -> groups, agent_groups_derived
	applied map[string]uint64   // bucket -> newest revision applied
	watched []jetstream.KeyValue

	aliveMu sync.Mutex
	alive   []string
	aliveAt time.Time

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartRoster watches the two membership buckets (either may be nil) until
// Stop. It returns once the watchers delivered the current values.
func StartRoster(ctx context.Context, manual, derived jetstream.KeyValue, db *store.DB, log *slog.Logger) (*Roster, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Roster{DB: db, Now: time.Now, Log: log, manual: map[string][]string{}, derived: map[string][]string{}, applied: map[string]uint64{}}
	bg, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	for _, w := range []struct {
		kv jetstream.KeyValue
		m  map[string][]string
	}{{manual, r.manual}, {derived, r.derived}} {
		if w.kv == nil {
			continue
		}
		if err := r.watch(ctx, bg, w.kv, w.m); err != nil {
			r.Stop()
			return nil, err
		}
		r.watched = append(r.watched, w.kv)
	}
	return r, nil
}

// watch feeds m from kv; it returns after the initial values.
func (r *Roster) watch(ctx, bg context.Context, kv jetstream.KeyValue, m map[string][]string) error {
	return kvwatch.Follow(ctx, bg, kv, &r.wg, r.Log, func(e jetstream.KeyValueEntry) { r.apply(kv.Bucket(), m, e) })
}

func (r *Roster) apply(bucket string, m map[string][]string, e jetstream.KeyValueEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied[bucket] = max(r.applied[bucket], e.Revision())
	if e.Operation() != jetstream.KeyValuePut {
		delete(m, e.Key())
		return
	}
	g, err := wire.DecodeAgentGroups(e.Value())
	if err != nil {
		// As agents do: a value that does not parse is no groups.
		r.Log.Warn("agent groups value does not decode; taken as none", "bucket", bucket, "pc_id", e.Key(), "err", err)
		delete(m, e.Key())
		return
	}
	m[e.Key()] = Normalize(g.Groups)
}

// Stop ends the watchers.
func (r *Roster) Stop() {
	if r == nil || r.cancel == nil {
		return
	}
	r.cancel()
	r.wg.Wait()
}

// GroupsOf is a PC's effective groups, sorted; nil when none.
func (r *Roster) GroupsOf(pc string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.manual[pc]) == 0 && len(r.derived[pc]) == 0 {
		return nil
	}
	return Normalize(append(slices.Clone(r.manual[pc]), r.derived[pc]...))
}

// Membership is the effective membership inverted: group -> sorted pcs.
func (r *Roster) Membership() map[string][]string {
	r.mu.RLock()
	out := map[string][]string{}
	for _, m := range []map[string][]string{r.manual, r.derived} {
		for pc, gs := range m {
			for _, g := range gs {
				out[g] = append(out[g], pc)
			}
		}
	}
	r.mu.RUnlock()
	for g, pcs := range out {
		slices.Sort(pcs)
		out[g] = slices.Compact(pcs)
	}
	return out
}

// Members is every PC in group g, online or not, sorted.
func (r *Roster) Members(g string) []string {
	r.mu.RLock()
	var out []string
	for _, m := range []map[string][]string{r.manual, r.derived} {
		for pc, gs := range m {
			if slices.Contains(gs, g) {
				out = append(out, pc)
			}
		}
	}
	r.mu.RUnlock()
	slices.Sort(out)
	return slices.Compact(out)
}

// EmptyGroups are the groups of the list that have no member at all. When
// one looks empty it first catches up with the buckets (Sync): a PC put in
// a group a moment ago, maybe through another node, counts.
func (r *Roster) EmptyGroups(ctx context.Context, groups []string) []string {
	empty := func() []string {
		var out []string
		for _, g := range groups {
			if len(r.Members(g)) == 0 {
				out = append(out, g)
			}
		}
		return out
	}
	if out := empty(); len(out) == 0 {
		return nil
	}
	if err := r.Sync(ctx); err != nil {
		r.Log.Warn("roster: catching up with the membership buckets", "err", err)
	}
	return empty()
}

// Sync waits (up to 2 s) until the watchers applied every revision the
// membership buckets held when it was called.
func (r *Roster) Sync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, kv := range r.watched {
		st, err := kv.Status(ctx)
		if err != nil {
			return fmt.Errorf("status %s: %w", kv.Bucket(), err)
		}
		bs, ok := st.(*jetstream.KeyValueBucketStatus)
		if !ok {
			continue
		}
		last := bs.StreamInfo().State.LastSeq
		for {
			r.mu.RLock()
			done := r.applied[kv.Bucket()] >= last
			r.mu.RUnlock()
			if done {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("sync %s: %w", kv.Bucket(), ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

// Resolve is the PCs a target means, sorted: for all, every alive agent;
// for groups, their alive members (every member when aliveOnly is false);
// pcs verbatim, as upstream (an offline PC gets the Command from EXEC when
// it reconnects).
func (r *Roster) Resolve(ctx context.Context, all bool, groups, pcs []string, aliveOnly bool) []string {
	set := map[string]bool{}
	for _, p := range pcs {
		set[p] = true
	}
	if all || len(groups) > 0 {
		var alive map[string]bool
		if all || aliveOnly {
			alive = map[string]bool{}
			for _, pc := range r.Alive(ctx) {
				alive[pc] = true
			}
		}
		if all {
			maps.Copy(set, alive)
		}
		for _, g := range groups {
			for _, pc := range r.Members(g) {
				if !aliveOnly || alive[pc] {
					set[pc] = true
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// Count is upstream's target_count: the alive PCs the target resolves to,
// at least 1.
func (r *Roster) Count(ctx context.Context, all bool, groups, pcs []string) int {
	return max(1, len(r.Resolve(ctx, all, groups, pcs, true)))
}

// Alive lists the agents with a heartbeat within AliveWithin. The answer
// is cached for a second, so a burst of fires costs one query.
func (r *Roster) Alive(ctx context.Context) []string {
	if r == nil || r.DB == nil {
		return nil
	}
	now := r.Now()
	r.aliveMu.Lock()
	defer r.aliveMu.Unlock()
	if !r.aliveAt.IsZero() && now.Sub(r.aliveAt) < time.Second && !now.Before(r.aliveAt) {
		return r.alive
	}
	rows, err := r.DB.R.QueryContext(ctx, `SELECT pc_id FROM agents WHERE last_heartbeat >= ?`,
		store.FormatTime(now.Add(-AliveWithin)))
	if err != nil {
		r.Log.Warn("list alive agents", "err", err)
		return r.alive
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var pc string
		if err := rows.Scan(&pc); err != nil {
			r.Log.Warn("list alive agents", "err", err)
			return r.alive
		}
		out = append(out, pc)
	}
	if err := rows.Err(); err != nil {
		r.Log.Warn("list alive agents", "err", err)
		return r.alive
	}
	r.alive, r.aliveAt = out, now
	return out
}
