package scheduler

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kanade-go/kanade/store"
)

// Completions keeps, per job, what the projection says of each PC's runs,
// so that a poll minute of many reconcile schedules does not read every
// job's results again: upstream's completions query (a grouped scan of the
// job's rows) per schedule per minute is 10 million rows a minute for
// 1,000 schedules over 10,000 PCs.
//
// A job is read whole the first time a poll asks for it and again every
// fullEvery (which also picks up rows retention deleted); in between one
// query per poll minute reads the rows inserted since (execution_results is
// a rowid table, and inserts take increasing rowids) and the rows that were
// in flight (the projector finishes a row in place).
//
// Each job's table is dense over the PCs (interned once for all jobs):
// two 32-bit times and a counter, 9 bytes a PC, 90 MB for 1,000 jobs over
// 10,000 PCs.
type Completions struct {
	db    *store.DB
	names interner

	mu        sync.Mutex
	started   bool // lastRowid is set
	lastRowid int64
	polled    time.Time // the poll instant the incremental read was for
	jobs      map[string]*JobRuns
	inflight  map[int64]runKey // rows still without finished_at
	// killed are rows that finished with exit -1 (the reaper's mark, a
	// kill, a timeout) in the last killedWatch, read again at each
	// catch-up: a reaped run's real result lands later in the same row
	// (same rowid), which the incremental read by rowid would not see.
	killed map[int64]time.Time
	// batch is how many rows one catch-up query reads (0: catchUpBatch).
	batch int
}

// killedWatch is how long a row that ended with exit -1 is read again for
// a late real result.
const killedWatch = 2 * time.Hour

type runKey struct {
	job string
	pc  int32
}

// interner numbers PC names. Reads take no lock: the table is replaced,
// never changed, when names are added (rarely: a PC never seen before).
type interner struct {
	mu  sync.Mutex // writers
	tab atomic.Pointer[internTable]
}

type internTable struct {
	ids   map[string]int32
	names []string
}

func (in *interner) table() *internTable {
	if t := in.tab.Load(); t != nil {
		return t
	}
	return &internTable{}
}

// id numbers pc, adding it if new.
func (in *interner) id(pc string) int32 {
	if i, ok := in.lookup(pc); ok {
		return i
	}
	in.add([]string{pc})
	i, _ := in.lookup(pc)
	return i
}

// add numbers the names not yet known, in one new table.
func (in *interner) add(pcs []string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	old := in.table()
	var fresh []string
	for _, pc := range pcs {
		if _, ok := old.ids[pc]; !ok {
			fresh = append(fresh, pc)
		}
	}
	if len(fresh) == 0 {
		return
	}
	t := &internTable{ids: make(map[string]int32, len(old.ids)+len(fresh)), names: slices.Clip(old.names)}
	for k, v := range old.ids {
		t.ids[k] = v
	}
	for _, pc := range fresh {
		if _, ok := t.ids[pc]; ok {
			continue
		}
		t.ids[pc] = int32(len(t.names))
		t.names = append(t.names, pc)
	}
	in.tab.Store(t)
}

func (in *interner) lookup(pc string) (int32, bool) {
	i, ok := in.table().ids[pc]
	return i, ok
}

func (in *interner) name(i int32) string { return in.table().names[i] }

// runsEpoch is the origin of the 32-bit times (seconds; 0 = none).
var runsEpoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

func packTime(t time.Time) int32 {
	if t.IsZero() {
		return 0
	}
	return int32(min(max(t.Unix()-runsEpoch, 1), 1<<31-1))
}

func unpackTime(v int32) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(int64(v)+runsEpoch, 0).UTC()
}

// JobRuns is one job's runs per PC: dense over the interned PCs, or a
// plain map (the per-version read). Never changed once handed out.
type JobRuns struct {
	loaded   time.Time
	names    *interner
	ok, done []int32
	inflight []uint8
	m        map[string]pcRuns
}

// Get is pc's runs (zero: none).
func (r *JobRuns) Get(pc string) pcRuns {
	if r == nil {
		return pcRuns{}
	}
	if r.m != nil {
		return r.m[pc]
	}
	i, ok := r.names.lookup(pc)
	if !ok || int(i) >= len(r.ok) {
		return pcRuns{}
	}
	return pcRuns{lastOK: unpackTime(r.ok[i]), lastDone: unpackTime(r.done[i]), running: r.inflight[i] > 0}
}

// EachRunning calls fn for each PC with a run in flight.
func (r *JobRuns) EachRunning(fn func(pc string)) {
	if r == nil {
		return
	}
	if r.m != nil {
		for pc, st := range r.m {
			if st.running {
				fn(pc)
			}
		}
		return
	}
	for i, n := range r.inflight {
		if n > 0 {
			fn(r.names.name(int32(i)))
		}
	}
}

// grow makes room for index i.
func (r *JobRuns) grow(i int32) {
	if n := int(i) + 1; n > len(r.ok) {
		r.ok = append(r.ok, make([]int32, n-len(r.ok))...)
		r.done = append(r.done, make([]int32, n-len(r.done))...)
		r.inflight = append(r.inflight, make([]uint8, n-len(r.inflight))...)
	}
}

func (r *JobRuns) clone() *JobRuns {
	return &JobRuns{loaded: r.loaded, names: r.names, ok: slices.Clone(r.ok), done: slices.Clone(r.done), inflight: slices.Clone(r.inflight)}
}

// fullEvery bounds how stale a job's cached completions may grow with
// respect to deletes (retention) and missed updates.
const fullEvery = time.Hour

// newCompletions caches completions read from db, batch rows a catch-up
// query (0: catchUpBatch).
func newCompletions(db *store.DB, batch int) *Completions {
	return &Completions{db: db, batch: batch, jobs: map[string]*JobRuns{}, inflight: map[int64]runKey{}, killed: map[int64]time.Time{}}
}

// Runs returns per PC the runs of job as of now (a poll instant). version,
// when set (once_per_version), bypasses the cache: it is rare and keyed by
// the manifest's version.
func (c *Completions) Runs(ctx context.Context, job, version string, now time.Time) (*JobRuns, error) {
	return c.runs(ctx, job, version, now, catchUpPerPoll)
}

// Current is Runs caught up to this moment, for a reader outside the polls
// (the coverage summary).
func (c *Completions) Current(ctx context.Context, job string, now time.Time) (*JobRuns, error) {
	return c.runs(ctx, job, "", now, catchUpNow)
}

// Cached is Runs without catching up (a job not cached yet is read whole):
// for the rest of a reader's batch after a Current.
func (c *Completions) Cached(ctx context.Context, job string, now time.Time) (*JobRuns, error) {
	return c.runs(ctx, job, "", now, catchUpNever)
}

const (
	catchUpPerPoll = iota // once per poll instant
	catchUpNow
	catchUpNever
)

func (c *Completions) runs(ctx context.Context, job, version string, now time.Time, mode int) (*JobRuns, error) {
	if c == nil || c.db == nil {
		return &JobRuns{m: map[string]pcRuns{}}, nil
	}
	if version != "" {
		return jobRuns(ctx, c.db, job, version, now)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if mode == catchUpNow || mode == catchUpPerPoll && !c.polled.Equal(now) {
		if err := c.catchUp(ctx, now); err != nil {
			return nil, err
		}
		if mode == catchUpPerPoll {
			c.polled = now
		}
	}
	jr := c.jobs[job]
	if jr == nil || now.Sub(jr.loaded) >= fullEvery+staggerOf(job) || jr.loaded.After(now) {
		var err error
		if jr, err = c.load(ctx, job, now); err != nil {
			return nil, err
		}
		c.jobs[job] = jr
	}
	return jr, nil
}

// load reads one job whole.
func (c *Completions) load(ctx context.Context, job string, now time.Time) (*JobRuns, error) {
	jr := &JobRuns{loaded: now, names: &c.names}
	type got struct {
		pc string
		r  pcRuns
	}
	var all []got
	err := eachJobRun(ctx, c.db, job, "", now, func(pc string, r pcRuns) { all = append(all, got{pc, r}) })
	if err != nil {
		return nil, err
	}
	pcs := make([]string, len(all))
	for k, g := range all {
		pcs[k] = g.pc
	}
	c.names.add(pcs)
	for _, g := range all {
		i := c.names.id(g.pc)
		jr.grow(i)
		jr.ok[i], jr.done[i] = packTime(g.r.lastOK), packTime(g.r.lastDone)
	}
	rows, err := c.db.R.QueryContext(ctx, `SELECT rowid, pc_id FROM execution_results WHERE job_id = ? AND finished_at IS NULL`, job)
	if err != nil {
		return nil, fmt.Errorf("completions: %w", err)
	}
	defer rows.Close()
	for k, rk := range c.inflight {
		if rk.job == job {
			delete(c.inflight, k)
		}
	}
	for rows.Next() {
		var id int64
		var pc string
		if err := rows.Scan(&id, &pc); err != nil {
			return nil, fmt.Errorf("completions: %w", err)
		}
		i := c.names.id(pc)
		jr.grow(i)
		c.inflight[id] = runKey{job, i}
		if jr.inflight[i] < 255 {
			jr.inflight[i]++
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("completions: %w", err)
	}
	// Recently killed or reaped rows, whose real result may still land in
	// place (see Completions.killed).
	krows, err := c.db.R.QueryContext(ctx, `SELECT rowid FROM execution_results WHERE job_id = ? AND exit_code = -1 AND finished_at >= ?`,
		job, store.FormatTime(time.Now().Add(-killedWatch)))
	if err != nil {
		return nil, fmt.Errorf("completions: %w", err)
	}
	defer krows.Close()
	for krows.Next() {
		var id int64
		if err := krows.Scan(&id); err != nil {
			return nil, fmt.Errorf("completions: %w", err)
		}
		c.killed[id] = time.Now()
	}
	return jr, krows.Err()
}

// catchUp applies the rows inserted since the last read and the rows that
// were in flight or recently killed, finishes clamped as of now (see
// finishedAsOf). It pages through them, batch rows a
// query, and applies each row as it is read: a burst of results (or a
// long pause between polls) costs a batch of memory, not the burst.
func (c *Completions) catchUp(ctx context.Context, now time.Time) error {
	var maxRowid sql.NullInt64
	if err := c.db.R.QueryRowContext(ctx, `SELECT MAX(rowid) FROM execution_results`).Scan(&maxRowid); err != nil {
		return fmt.Errorf("completions: %w", err)
	}
	if maxRowid.Int64 < c.lastRowid {
		// The table was rebuilt (rowids start over): read every job again.
		c.reset()
	}
	if !c.started {
		// Nothing cached yet: jobs load whole when asked.
		c.lastRowid, c.started = maxRowid.Int64, true
		return nil
	}
	// The ids to read again are taken before any row is applied: a new
	// row applied below may join them, and is read once.
	inflight := make([]int64, 0, len(c.inflight))
	for id := range c.inflight {
		inflight = append(inflight, id)
	}
	wall := time.Now()
	killed := make([]int64, 0, len(c.killed))
	for id, since := range c.killed {
		if wall.Sub(since) > killedWatch {
			delete(c.killed, id)
			continue
		}
		killed = append(killed, id)
	}
	a := catchUpApply{c: c, now: now, changed: map[string]*JobRuns{}}
	err := a.pages(ctx, c.batchSize(), c.lastRowid, maxRowid.Int64)
	if err == nil {
		err = a.ids(ctx, c.batchSize(), inflight, `finished_at IS NOT NULL`)
	}
	if err == nil {
		err = a.ids(ctx, c.batchSize(), killed, `exit_code IS NOT -1`)
	}
	if err != nil {
		// Part of the rows were applied to the in-flight and killed sets:
		// start over rather than count a row twice.
		c.reset()
		return fmt.Errorf("completions: %w", err)
	}
	c.lastRowid = maxRowid.Int64
	for job, jr := range a.changed {
		c.jobs[job] = jr
	}
	return nil
}

// reset forgets everything cached: each job is read whole when next asked.
func (c *Completions) reset() {
	c.jobs, c.inflight, c.killed, c.started = map[string]*JobRuns{}, map[int64]runKey{}, map[int64]time.Time{}, false
}

// catchUpBatch is how many rows one catch-up query reads.
const catchUpBatch = 1000

func (c *Completions) batchSize() int {
	if c.batch > 0 {
		return c.batch
	}
	return catchUpBatch
}

// catchUpApply is one catch-up: the rows read so far, applied per job on a
// copy of its table (swapped in when the catch-up succeeds).
type catchUpApply struct {
	c       *Completions
	now     time.Time
	changed map[string]*JobRuns
}

const catchUpCols = `SELECT rowid, job_id, pc_id, exit_code, finished_at, recorded_at FROM execution_results`

// pages applies the rows with rowid in (from, to], batch at a time.
func (a *catchUpApply) pages(ctx context.Context, batch int, from, to int64) error {
	for from < to {
		rows, err := a.c.db.R.QueryContext(ctx, catchUpCols+` WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?`, from, to, batch)
		if err != nil {
			return err
		}
		n, last, err := a.scan(rows)
		if err != nil {
			return err
		}
		if n < batch {
			return nil
		}
		from = last
	}
	return nil
}

// ids applies the rows of ids that match cond, batch ids a query.
func (a *catchUpApply) ids(ctx context.Context, batch int, ids []int64, cond string) error {
	for len(ids) > 0 {
		part := ids[:min(batch, len(ids))]
		ids = ids[len(part):]
		arg, _ := json.Marshal(part)
		rows, err := a.c.db.R.QueryContext(ctx, catchUpCols+` WHERE rowid IN (SELECT value FROM json_each(?)) AND `+cond, string(arg))
		if err != nil {
			return err
		}
		if _, _, err := a.scan(rows); err != nil {
			return err
		}
	}
	return nil
}

// scan applies each row of rows; it returns how many there were and the
// last rowid.
func (a *catchUpApply) scan(rows *sql.Rows) (n int, last int64, err error) {
	defer rows.Close()
	for rows.Next() {
		var id int64
		var job sql.NullString
		var pc string
		var code sql.NullInt64
		var finished, recorded sql.NullString
		if err := rows.Scan(&id, &job, &pc, &code, &finished, &recorded); err != nil {
			return n, last, err
		}
		n, last = n+1, id
		a.apply(id, job.String, pc, code, finished, recorded)
	}
	return n, last, rows.Err()
}

func (a *catchUpApply) apply(id int64, job, pc string, code sql.NullInt64, finished, recorded sql.NullString) {
	c := a.c
	jr, ok := a.changed[job]
	if !ok {
		old := c.jobs[job]
		if old == nil {
			return // a job no poll asked for yet
		}
		jr = old.clone()
		a.changed[job] = jr
	}
	i := c.names.id(pc)
	jr.grow(i)
	_, wasInflight := c.inflight[id]
	if !finished.Valid {
		if !wasInflight {
			c.inflight[id] = runKey{job, i}
			if jr.inflight[i] < 255 {
				jr.inflight[i]++
			}
		}
		return
	}
	if wasInflight {
		delete(c.inflight, id)
		if jr.inflight[i] > 0 {
			jr.inflight[i]--
		}
	}
	if code.Valid && code.Int64 == -1 {
		c.killed[id] = time.Now()
	} else {
		delete(c.killed, id)
	}
	if t, ok := clampFinished(finished, recorded, a.now); ok {
		v := packTime(t)
		jr.done[i] = max(jr.done[i], v)
		if code.Valid && code.Int64 == 0 {
			jr.ok[i] = max(jr.ok[i], v)
		}
	}
}

// staggerOf spreads the jobs' full reads over half an hour, so they do not
// all fall due in the same minute.
func staggerOf(job string) time.Duration {
	h := fnv.New32a()
	h.Write([]byte(job))
	return time.Duration(h.Sum32()%1800) * time.Second
}
