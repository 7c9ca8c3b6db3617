package scheduler

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"sync"
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
type Completions struct {
	db *store.DB

	mu        sync.Mutex
	started   bool // lastRowid is set
	lastRowid int64
	polled    time.Time // the poll instant the incremental read was for
	jobs      map[string]*jobCompletions
	inflight  map[int64]runKey // rows still without finished_at
}

type runKey struct{ job, pc string }

type jobCompletions struct {
	loaded time.Time
	pcs    map[string]pcRuns // replaced, never changed in place: readers hold it without a lock
}

// fullEvery bounds how stale a job's cached completions may grow with
// respect to deletes (retention) and missed updates.
const fullEvery = time.Hour

func newCompletions(db *store.DB) *Completions {
	return &Completions{db: db, jobs: map[string]*jobCompletions{}, inflight: map[int64]runKey{}}
}

// Runs returns per PC the runs of job as of now (a poll instant). version,
// when set (once_per_version), bypasses the cache: it is rare and keyed by
// the manifest's version.
func (c *Completions) Runs(ctx context.Context, job, version string, now time.Time) (map[string]pcRuns, error) {
	return c.runs(ctx, job, version, now, false)
}

// Current is Runs caught up to this moment, for a reader outside the polls
// (the coverage summary).
func (c *Completions) Current(ctx context.Context, job string, now time.Time) (map[string]pcRuns, error) {
	return c.runs(ctx, job, "", now, true)
}

func (c *Completions) runs(ctx context.Context, job, version string, now time.Time, fresh bool) (map[string]pcRuns, error) {
	if c == nil || c.db == nil {
		return map[string]pcRuns{}, nil
	}
	if version != "" {
		return jobRuns(ctx, c.db, job, version)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if fresh || !c.polled.Equal(now) {
		if err := c.catchUp(ctx); err != nil {
			return nil, err
		}
		if !fresh {
			c.polled = now
		}
	}
	jc := c.jobs[job]
	if jc == nil || now.Sub(jc.loaded) >= fullEvery+staggerOf(job) || jc.loaded.After(now) {
		runs, err := jobRuns(ctx, c.db, job, "")
		if err != nil {
			return nil, err
		}
		rows, err := c.db.R.QueryContext(ctx, `SELECT rowid, pc_id FROM execution_results WHERE job_id = ? AND finished_at IS NULL`, job)
		if err != nil {
			return nil, fmt.Errorf("completions: %w", err)
		}
		for k, rk := range c.inflight {
			if rk.job == job {
				delete(c.inflight, k)
			}
		}
		for rows.Next() {
			var id int64
			var pc string
			if err := rows.Scan(&id, &pc); err != nil {
				rows.Close()
				return nil, fmt.Errorf("completions: %w", err)
			}
			c.inflight[id] = runKey{job, pc}
			st := runs[pc]
			st.inflightRows++
			st.running = true
			runs[pc] = st
		}
		rows.Close()
		jc = &jobCompletions{loaded: now, pcs: runs}
		c.jobs[job] = jc
	}
	return jc.pcs, nil
}

// catchUp applies the rows inserted since the last read and the rows that
// were in flight.
func (c *Completions) catchUp(ctx context.Context) error {
	var maxRowid sql.NullInt64
	if err := c.db.R.QueryRowContext(ctx, `SELECT MAX(rowid) FROM execution_results`).Scan(&maxRowid); err != nil {
		return fmt.Errorf("completions: %w", err)
	}
	if maxRowid.Int64 < c.lastRowid {
		// The table was rebuilt (rowids start over): read every job again.
		c.jobs, c.inflight, c.started = map[string]*jobCompletions{}, map[int64]runKey{}, false
	}
	if !c.started {
		// Nothing cached yet: jobs load whole when asked.
		c.lastRowid, c.started = maxRowid.Int64, true
		return nil
	}
	type row struct {
		id       int64
		job, pc  string
		code     sql.NullInt64
		finished sql.NullString
	}
	var got []row
	scan := func(rows *sql.Rows) error {
		defer rows.Close()
		for rows.Next() {
			var r row
			var job sql.NullString
			if err := rows.Scan(&r.id, &job, &r.pc, &r.code, &r.finished); err != nil {
				return err
			}
			r.job = job.String
			got = append(got, r)
		}
		return rows.Err()
	}
	rows, err := c.db.R.QueryContext(ctx, `SELECT rowid, job_id, pc_id, exit_code, finished_at FROM execution_results
		WHERE rowid > ? AND rowid <= ? ORDER BY rowid`, c.lastRowid, maxRowid.Int64)
	if err != nil {
		return fmt.Errorf("completions: %w", err)
	}
	if err := scan(rows); err != nil {
		return fmt.Errorf("completions: %w", err)
	}
	if len(c.inflight) > 0 {
		ids := make([]int64, 0, len(c.inflight))
		for id := range c.inflight {
			ids = append(ids, id)
		}
		arg, _ := json.Marshal(ids)
		rows, err := c.db.R.QueryContext(ctx, `SELECT rowid, job_id, pc_id, exit_code, finished_at FROM execution_results
			WHERE rowid IN (SELECT value FROM json_each(?)) AND finished_at IS NOT NULL`, string(arg))
		if err != nil {
			return fmt.Errorf("completions: %w", err)
		}
		if err := scan(rows); err != nil {
			return fmt.Errorf("completions: %w", err)
		}
	}
	c.lastRowid = maxRowid.Int64
	// Apply per job on a copy of its map.
	changed := map[string]map[string]pcRuns{}
	pcsOf := func(job string) map[string]pcRuns {
		if m, ok := changed[job]; ok {
			return m
		}
		jc := c.jobs[job]
		if jc == nil {
			return nil
		}
		m := maps.Clone(jc.pcs)
		changed[job] = m
		return m
	}
	for _, r := range got {
		m := pcsOf(r.job)
		if m == nil {
			continue // a job no poll asked for yet
		}
		st := m[r.pc]
		_, wasInflight := c.inflight[r.id]
		switch {
		case !r.finished.Valid:
			if !wasInflight {
				c.inflight[r.id] = runKey{r.job, r.pc}
				st.inflightRows++
			}
		default:
			if wasInflight {
				delete(c.inflight, r.id)
				st.inflightRows = max(st.inflightRows-1, 0)
			}
			t, err := store.ParseTime(r.finished.String)
			if err == nil {
				if t.After(st.lastDone) {
					st.lastDone = t
				}
				if r.code.Valid && r.code.Int64 == 0 && t.After(st.lastOK) {
					st.lastOK = t
				}
			}
		}
		st.running = st.inflightRows > 0
		m[r.pc] = st
	}
	for job, m := range changed {
		c.jobs[job] = &jobCompletions{loaded: c.jobs[job].loaded, pcs: m}
	}
	return nil
}

// staggerOf spreads the jobs' full reads over half an hour, so they do not
// all fall due in the same minute.
func staggerOf(job string) time.Duration {
	h := fnv.New32a()
	h.Write([]byte(job))
	return time.Duration(h.Sum32()%1800) * time.Second
}
