package projector

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"
)

// DefaultRebuildMin is the backlog of RESULTS, into an empty projection,
// from which the secondary indexes of execution_results are dropped for the
// replay and built once at the end.
const DefaultRebuildMin = 50_000

// rebuildKeep are indexes of execution_results the write path itself reads
// (an execution record counts its results by exec_id), so a rebuild keeps
// them. Unique and primary key indexes (upserts by result_id) have no SQL
// in sqlite_master and are never dropped.
var rebuildKeep = map[string]bool{"idx_results_exec": true}

// rebuildState says whether indexes are missing for a rebuild.
type rebuildState struct {
	mu      sync.Mutex
	pending bool
}

func (r *rebuildState) active() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pending
}

func (r *rebuildState) set(v bool) {
	r.mu.Lock()
	r.pending = v
	r.mu.Unlock()
}

// prepareRebuild runs before the consumers start. A rebuild left
// unfinished (a crash) is continued. Otherwise, when nothing was ever
// projected (no offsets, no rows) and RESULTS holds at least RebuildMin
// messages, the secondary indexes of execution_results and its triggers
// are dropped, their SQL kept in projector_rebuild in the same transaction.
//
// The result_exec_ids triggers (store migration 0200) keep that table
// current row by row; measured side by side on 200,000 results, dropping
// them made the replay 15-24 % faster, and one INSERT ... SELECT DISTINCT
// over the finished table fills it instead (createIndexes). Only those:
// another trigger would need its own fill.
func (p *Projector) prepareRebuild(ctx context.Context) error {
	var n int
	if err := p.db.W.QueryRowContext(ctx, `SELECT count(*) FROM projector_rebuild`).Scan(&n); err != nil {
		return fmt.Errorf("projector: read rebuild state: %w", err)
	}
	if n > 0 {
		p.rebuild.set(true)
		p.log.Info("projector: continuing a rebuild; indexes are created once caught up", "indexes", n)
		return nil
	}
	if p.o.RebuildMin < 0 {
		return nil
	}
	var offsets, rows int
	if err := p.db.W.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM projector_offsets),
		(SELECT count(*) FROM (SELECT 1 FROM execution_results LIMIT 1))`).Scan(&offsets, &rows); err != nil {
		return fmt.Errorf("projector: read rebuild state: %w", err)
	}
	if offsets > 0 || rows > 0 {
		return nil
	}
	var backlog uint64
	for _, s := range p.streams {
		if s.kind != kindResult {
			continue
		}
		str, err := p.js.Stream(ctx, s.name)
		if err != nil {
			return fmt.Errorf("projector: look up stream %s: %w", s.name, err)
		}
		backlog = str.CachedInfo().State.Msgs
	}
	if backlog < uint64(p.o.RebuildMin) {
		return nil
	}
	var dropped []string
	err := p.db.WriteTx(ctx, func(tx *sql.Tx) error {
		defs, err := indexDefs(ctx, tx, `SELECT name, sql, type FROM sqlite_master
			WHERE tbl_name = 'execution_results' AND sql IS NOT NULL
				AND (type = 'index' OR type = 'trigger' AND name LIKE 'result\_exec\_ids\_%' ESCAPE '\')
			ORDER BY type, name`)
		if err != nil {
			return err
		}
		for _, d := range defs {
			if rebuildKeep[d[0]] {
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO projector_rebuild (name, sql) VALUES (?, ?)`, d[0], d[1]); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DROP `+d[2]+` `+quoteIdent(d[0])); err != nil {
				return err
			}
			dropped = append(dropped, d[0])
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("projector: drop indexes for the rebuild: %w", err)
	}
	if len(dropped) > 0 {
		p.rebuild.set(true)
		p.log.Info("projector: rebuilding from empty; indexes dropped until caught up",
			"backlog", backlog, "indexes", strings.Join(dropped, ","))
	}
	return nil
}

// finishRebuild waits until every stream has caught up, then creates the
// dropped indexes again in one transaction with the deletion of their
// rows. Until then CaughtUp is false, so nothing is served from the
// projection (and the reaper and retention wait).
func (p *Projector) finishRebuild(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	backoff := time.Second
	for p.rebuild.active() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !p.streamsCurrent() {
			continue
		}
		start := time.Now()
		if err := p.createIndexes(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.Error("projector: recreate indexes after the rebuild; retrying", "err", err)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		p.rebuild.set(false)
		p.log.Info("projector: indexes recreated after the rebuild", "took", time.Since(start).Round(time.Millisecond))
	}
}

// streamsCurrent reports whether every stream is within a batch of its
// head: steady live traffic must not keep the indexes away for ever, and
// what arrives meanwhile is applied with them.
func (p *Projector) streamsCurrent() bool {
	for _, s := range p.streams {
		if m, _, known := s.lag(); !known || m >= uint64(p.o.Batch) {
			return false
		}
	}
	return true
}

// createIndexes creates the dropped indexes and triggers again and fills
// what the triggers would have kept, in one transaction, so no row can
// slip in between the fill and the trigger.
func (p *Projector) createIndexes(ctx context.Context) error {
	return p.db.WriteTx(ctx, func(tx *sql.Tx) error {
		defs, err := indexDefs(ctx, tx, `SELECT name, sql, CASE WHEN sql LIKE 'CREATE TRIGGER%' THEN 'TRIGGER' ELSE 'INDEX' END
			FROM projector_rebuild ORDER BY name`)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO result_exec_ids (exec_id)
			SELECT DISTINCT exec_id FROM execution_results WHERE exec_id IS NOT NULL`); err != nil {
			return fmt.Errorf("fill result_exec_ids: %w", err)
		}
		for _, d := range defs {
			var exists int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name = ?`, d[0]).Scan(&exists); err != nil {
				return err
			}
			if exists == 0 {
				if _, err := tx.ExecContext(ctx, d[1]); err != nil {
					return fmt.Errorf("create %s %s: %w", strings.ToLower(d[2]), d[0], err)
				}
			}
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM projector_rebuild`)
		return err
	})
}

// indexDefs reads (name, sql, INDEX|TRIGGER) of indexes and triggers. They
// are read whole before any is dropped or created, since both change
// sqlite_master under the query.
func indexDefs(ctx context.Context, tx *sql.Tx, query string) ([][3]string, error) {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var defs [][3]string
	for rows.Next() {
		var name, def, typ string
		if err := rows.Scan(&name, &def, &typ); err != nil {
			return nil, err
		}
		defs = append(defs, [3]string{name, def, strings.ToUpper(typ)})
	}
	return defs, rows.Err()
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
