package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// JobCompressOutputs names the job in store_jobs that compresses the plain
// outputs of a database projected before outputs were compressed.
const JobCompressOutputs = "compress_outputs"

// CompressProgress is where the job stands.
type CompressProgress struct {
	Rows  int64 `json:"rows"`        // rows looked at so far
	Total int64 `json:"total"`       // rows when this run started, plus Rows of earlier runs
	Saved int64 `json:"saved_bytes"` // bytes saved so far
	Done  bool  `json:"done"`
}

// CompressOutputs compresses, in the background, the plain outputs of the
// rows already in the database: batch rows at a time in result_id order,
// each batch one write transaction that also stores the last result_id
// done in store_jobs, so a crash loses at most the batch in hand and the
// job resumes where it was. Rows the projector writes meanwhile are
// compressed already; a row it rewrites inside the batch's range is simply
// compressed again. ready is asked before each batch (false: wait a
// second), so live traffic and a rebuild go first. Progress is logged every
// few seconds. It returns when the job is done or ctx ends.
//
// progress, if set, is called with where the job stands after each batch.
func (db *DB) CompressOutputs(ctx context.Context, batch int, ready func() bool, log *slog.Logger, progress func(CompressProgress)) error {
	report := func(p CompressProgress) {
		if progress != nil {
			progress(p)
		}
	}
	if batch <= 0 {
		batch = 500
	}
	var cursor string
	var done bool
	var p CompressProgress
	err := db.W.QueryRowContext(ctx, `SELECT cursor, done, rows, saved FROM store_jobs WHERE name = ?`, JobCompressOutputs).
		Scan(&cursor, &done, &p.Rows, &p.Saved)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("compress outputs: %w", err)
	}
	if done {
		p.Total, p.Done = p.Rows, true
		report(p)
		return nil
	}
	var left int64
	if err := db.W.QueryRowContext(ctx, `SELECT count(*) FROM execution_results WHERE result_id > ?`, cursor).Scan(&left); err != nil {
		return fmt.Errorf("compress outputs: %w", err)
	}
	p.Total = p.Rows + left
	report(p)
	if left > 0 {
		log.Info("store: compressing the outputs of existing results in the background", "rows", left, "resumed_after", cursor)
	}
	start, lastLog := time.Now(), time.Now()
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if ready != nil && !ready() {
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		var n int
		err := db.WriteTx(ctx, func(tx *sql.Tx) error {
			var err error
			n, cursor, err = compressBatch(ctx, tx, cursor, batch, &p)
			if err != nil {
				return err
			}
			done = n < batch
			var doneAt any
			if done {
				doneAt = FormatTime(time.Now())
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO store_jobs (name, cursor, done, rows, saved, done_at) VALUES (?,?,?,?,?,?)
				ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, done = excluded.done,
					rows = excluded.rows, saved = excluded.saved, done_at = excluded.done_at`,
				JobCompressOutputs, cursor, done, p.Rows, p.Saved, doneAt)
			return err
		})
		if err != nil {
			return fmt.Errorf("compress outputs: %w", err)
		}
		p.Done = done
		report(p)
		if done {
			if left > 0 {
				log.Info("store: outputs compressed", "rows", p.Rows, "saved_bytes", p.Saved, "took", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			log.Info("store: compressing outputs", "rows", p.Rows, "of", p.Total,
				"percent", fmt.Sprintf("%.1f", 100*float64(p.Rows)/float64(max(p.Total, 1))), "saved_bytes", p.Saved)
		}
		// Let the projector's batches in between.
		t := time.NewTimer(5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// compressBatch compresses the plain outputs of the batch rows after
// cursor; it returns how many rows it looked at and the last result_id.
func compressBatch(ctx context.Context, tx *sql.Tx, cursor string, batch int, p *CompressProgress) (int, string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT result_id, stdout, stderr FROM execution_results
		WHERE result_id > ? ORDER BY result_id LIMIT ?`, cursor, batch)
	if err != nil {
		return 0, cursor, err
	}
	type change struct {
		id, col   string
		val, prev any
	}
	var changes []change
	n := 0
	for rows.Next() {
		var id string
		var out, errOut any
		if err := rows.Scan(&id, &out, &errOut); err != nil {
			rows.Close()
			return 0, cursor, err
		}
		n++
		cursor = id
		for _, c := range []struct {
			col string
			v   any
		}{{"stdout", out}, {"stderr", errOut}} {
			s, ok := c.v.(string)
			if !ok || len(s) < CompressMin {
				continue
			}
			val, prev := EncodeOutput(s)
			if z, ok := val.([]byte); ok {
				p.Saved += int64(len(s) - len(z))
				changes = append(changes, change{id, c.col, val, prev})
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, cursor, err
	}
	for _, c := range changes {
		// Only a value still plain is replaced (the column names are ours).
		if _, err := tx.ExecContext(ctx, `UPDATE execution_results SET `+c.col+` = ?, `+c.col+`_preview = ?
			WHERE result_id = ? AND typeof(`+c.col+`) = 'text'`, c.val, c.prev, c.id); err != nil {
			return 0, cursor, err
		}
	}
	p.Rows += int64(n)
	return n, cursor, nil
}

// ForgetCompressOutputs clears the job's state: a node storing plain
// outputs writes rows the finished job would never look at again.
func (db *DB) ForgetCompressOutputs(ctx context.Context) error {
	_, err := db.W.ExecContext(ctx, `DELETE FROM store_jobs WHERE name = ?`, JobCompressOutputs)
	return err
}
