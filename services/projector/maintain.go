package projector

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/kanade-go/kanade/store"
)

// maintain runs the reaper and retention every ReapInterval until ctx ends.
func (p *Projector) maintain(ctx context.Context) {
	t := time.NewTicker(p.o.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// While a stream catches up, in-flight rows are often only
		// waiting for results further down RESULTS: reaping them would be
		// undone a moment later.
		if p.CaughtUp(time.Minute) {
			if n, err := p.Reap(ctx, time.Now()); err != nil {
				p.log.Warn("projector: reap", "err", err)
			} else if n > 0 {
				p.log.Info("projector reaped in-flight results past their deadline", "rows", n)
			}
		}
		if p.o.Retention > 0 {
			if n, err := p.Prune(ctx, time.Now().Add(-p.o.Retention)); err != nil {
				p.log.Warn("projector: retention", "err", err)
			} else if n > 0 {
				p.log.Info("projector retention deleted old results", "rows", n, "retention", p.o.Retention)
			}
		}
	}
}

// Reaper deadlines: a run with a timeout gets timeout + max(2 min,
// timeout/2) after its start; one without, a day.
const (
	reapGraceMin   = 2 * time.Minute
	reapNoTimeout  = 24 * time.Hour
	reapBatch      = 5000
	retentionBatch = 5000
)

// Deadline is when an in-flight run started at start, with the given
// timeout (0 = unknown), is given up on.
func Deadline(start time.Time, timeoutSecs int64) time.Time {
	if timeoutSecs <= 0 {
		return start.Add(reapNoTimeout)
	}
	t := time.Duration(timeoutSecs) * time.Second
	return start.Add(t + max(reapGraceMin, t/2))
}

// Reap finishes in-flight rows whose deadline is before now: exit_code -1,
// reaped set, a note appended to stderr, finished_at the deadline (so a
// rebuild reaps to the same row), and counted as a failure of their
// execution. A real result arriving later replaces all of it.
func (p *Projector) Reap(ctx context.Context, now time.Time) (int, error) {
	type cand struct {
		id       string
		exec     string
		deadline time.Time
	}
	total := 0
	for {
		var n int
		err := p.db.WriteTx(ctx, func(tx *sql.Tx) error {
			n = 0
			rows, err := tx.QueryContext(ctx, `SELECT r.result_id, COALESCE(r.exec_id, ''),
				COALESCE(r.started_at, r.recorded_at), COALESCE(e.timeout_secs, 0)
				FROM execution_results r LEFT JOIN executions e ON e.exec_id = r.exec_id
				WHERE r.finished_at IS NULL`)
			if err != nil {
				return fmt.Errorf("find in-flight rows: %w", err)
			}
			var cands []cand
			for rows.Next() {
				var c cand
				var start string
				var timeout int64
				if err := rows.Scan(&c.id, &c.exec, &start, &timeout); err != nil {
					rows.Close()
					return err
				}
				t, err := store.ParseTime(start)
				if err != nil {
					continue
				}
				c.deadline = Deadline(t, timeout)
				if c.deadline.Before(now) && len(cands) < reapBatch {
					cands = append(cands, c)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			st, err := tx.PrepareContext(ctx, `UPDATE execution_results SET exit_code = -1, reaped = 1,
				finished_at = ?1, stderr = CASE WHEN typeof(stderr) = 'blob' THEN stderr ELSE stderr || ?2 END
				WHERE result_id = ?3 AND finished_at IS NULL`)
			if err != nil {
				return err
			}
			defer st.Close()
			var deltas execDeltas
			for _, c := range cands {
				note := fmt.Sprintf("\n[kanade: no result received by %s; marked as timed out (reaped)]\n",
					c.deadline.UTC().Format(time.RFC3339))
				if _, err := st.ExecContext(ctx, store.FormatTime(c.deadline), note, c.id); err != nil {
					return fmt.Errorf("reap %s: %w", c.id, err)
				}
				deltas.add(c.exec, countFailure)
				n++
			}
			return deltas.flush(ctx, tx)
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < reapBatch {
			return total, nil
		}
	}
}

// Prune deletes what is older than cutoff, in bounded transactions so the
// writer is never held for long: results (by start, or by recorded time
// when the start is unknown), executions (by initiation), rejects, and
// agents silent since; then the distinct values no row uses any more. It
// returns how many results it deleted.
func (p *Projector) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	c := store.FormatTime(cutoff)
	var total int64
	steps := []struct {
		query string
		count *atomic.Int64
	}{
		{`DELETE FROM execution_results WHERE rowid IN (SELECT rowid FROM execution_results
			WHERE started_at < ?1 ORDER BY started_at LIMIT ?2)`, &p.rowsResults},
		{`DELETE FROM execution_results WHERE rowid IN (SELECT rowid FROM execution_results
			WHERE started_at IS NULL AND recorded_at < ?1 LIMIT ?2)`, &p.rowsResults},
		{`DELETE FROM executions WHERE rowid IN (SELECT rowid FROM executions
			WHERE initiated_at < ?1 LIMIT ?2)`, &p.rowsExecutions},
		{`DELETE FROM rejects WHERE rowid IN (SELECT rowid FROM rejects WHERE recorded_at < ?1 LIMIT ?2)`, nil},
		{`DELETE FROM agents WHERE rowid IN (SELECT rowid FROM agents WHERE last_heartbeat < ?1 LIMIT ?2)`, &p.rowsAgents},
	}
	for i, s := range steps {
		for {
			var n int64
			err := p.db.WriteTx(ctx, func(tx *sql.Tx) error {
				r, err := tx.ExecContext(ctx, s.query, c, retentionBatch)
				if err != nil {
					return err
				}
				n, _ = r.RowsAffected()
				return nil
			})
			if err != nil {
				return total, fmt.Errorf("retention step %d: %w", i, err)
			}
			if s.count != nil {
				s.count.Add(-n)
			}
			if s.count == &p.rowsResults {
				total += n
			}
			if n < retentionBatch {
				break
			}
			if ctx.Err() != nil {
				return total, ctx.Err()
			}
		}
	}
	if total == 0 {
		return 0, nil
	}
	err := p.db.WriteTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM result_pc_ids WHERE NOT EXISTS
			(SELECT 1 FROM execution_results r WHERE r.pc_id = result_pc_ids.pc_id)`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM result_job_ids WHERE NOT EXISTS
			(SELECT 1 FROM execution_results r WHERE r.job_id = result_job_ids.job_id)`); err != nil {
			return err
		}
		p.known.clear()
		return nil
	})
	if err != nil {
		return total, fmt.Errorf("retention: prune distinct values: %w", err)
	}
	return total, nil
}
