package projector

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kanade-go/kanade/store"
)

// The statements of a batch. Between an EventStarted and an ExecResult for
// the same result_id, in either order and either one twice, the end row is
// the same: the result fills the outcome once (or over a reaped row), the
// event only fills what is still NULL, and recorded_at keeps the earliest
// publish time of the two, so a rebuild that reads the streams in another
// interleaving reproduces it.
//
// A result counts toward its execution as exactly one of success (exit 0),
// failure (any other exit, the reaper's -1 included) or skipped (the agent
// set skipped: a deliberate non-run, whatever its synthetic exit code), and
// all three count toward completion.
const (
	sqlLookup = `SELECT result_id, finished_at IS NOT NULL, reaped, exec_id, pc_id FROM execution_results
		WHERE result_id IN (SELECT value FROM json_each(?))`
	sqlInsertResultHead = `INSERT INTO execution_results (result_id, request_id, exec_id, pc_id, exit_code,
		stdout, stderr, started_at, finished_at, recorded_at, job_id, skipped) VALUES (?,?,?,?,?,?,?,?,?,?,?,`
	// The two take the same arguments; skipped is part of the statement.
	sqlInsertResult        = sqlInsertResultHead + `0)`
	sqlInsertSkippedResult = sqlInsertResultHead + `1)`
	sqlUpdateResult        = `UPDATE execution_results SET exit_code = ?, stdout = ?, stderr = ?, finished_at = ?,
		job_id = COALESCE(?, job_id), exec_id = COALESCE(exec_id, ?), started_at = COALESCE(started_at, ?),
		recorded_at = MIN(recorded_at, ?), reaped = 0, skipped = ?
		WHERE result_id = ? AND (finished_at IS NULL OR reaped = 1)`
	sqlInsertStarted = `INSERT INTO execution_results (result_id, request_id, exec_id, pc_id, started_at,
		recorded_at, job_id, version) VALUES (?,?,?,?,?,?,?,?)`
	sqlUpdateStarted = `UPDATE execution_results SET version = COALESCE(version, ?),
		started_at = COALESCE(started_at, ?), exec_id = COALESCE(exec_id, ?), job_id = COALESCE(job_id, ?),
		recorded_at = MIN(recorded_at, ?) WHERE result_id = ?`
	sqlReject = `INSERT OR IGNORE INTO rejects (stream, seq, subject, error, payload, size, recorded_at)
		VALUES (?,?,?,?,?,?,?)`
	sqlInsertExecution = `INSERT INTO executions (exec_id, job_id, version, initiated_by, initiated_at,
		target_count, request_id, target, timeout_secs, deadline_at) VALUES (?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (exec_id) DO NOTHING`
	// A new executions row counts the results already projected for it,
	// so the counters end exact whichever stream was read first.
	sqlCountExecution = `UPDATE executions SET
		success_count = (SELECT count(*) FROM execution_results r WHERE r.exec_id = executions.exec_id
			AND r.finished_at IS NOT NULL AND r.skipped = 0 AND r.exit_code = 0),
		failure_count = (SELECT count(*) FROM execution_results r WHERE r.exec_id = executions.exec_id
			AND r.finished_at IS NOT NULL AND r.skipped = 0 AND r.exit_code <> 0),
		skipped_count = (SELECT count(*) FROM execution_results r WHERE r.exec_id = executions.exec_id
			AND r.finished_at IS NOT NULL AND r.skipped = 1)
		WHERE exec_id = ?`
	sqlExecutionStatus = `UPDATE executions SET status = CASE
		WHEN target_count > 0 AND success_count + failure_count + skipped_count >= target_count THEN 'completed'
		WHEN EXISTS (SELECT 1 FROM execution_results r WHERE r.exec_id = executions.exec_id) THEN 'running'
		ELSE 'pending' END
		WHERE exec_id = ? AND status IN ('pending', 'running')`
	// SET expressions see the old values, hence the deltas in the CASE.
	sqlExecutionDelta = `UPDATE executions SET success_count = success_count + ?1,
		failure_count = failure_count + ?2, skipped_count = skipped_count + ?3,
		status = CASE WHEN status NOT IN ('pending', 'running') THEN status
			WHEN target_count > 0
				AND success_count + failure_count + skipped_count + ?1 + ?2 + ?3 >= target_count THEN 'completed'
			ELSE 'running' END
		WHERE exec_id = ?4`
	sqlOffset = `INSERT INTO projector_offsets (stream, last_seq) VALUES (?, ?)
		ON CONFLICT (stream) DO UPDATE SET last_seq = excluded.last_seq`
)

// rowState is what a batch needs to know of an existing row.
type rowState struct {
	finished bool
	reaped   bool
	execID   string
	pcID     string // the row's first sender; another pc_id is rejected
}

// txResult is what a committed batch changed, for the in-memory figures.
type txResult struct {
	lastSeq  uint64
	applied  int
	inserted int // new execution_results rows
	execs    int // new executions rows
	rejects  int
	pcIDs    []string // distinct values inserted
	jobIDs   []string
	gen      uint64 // knownValues generation they were checked under
}

// execDeltas accumulates counter changes per execution within a
// transaction; an entry with zero deltas still moves pending -> running.
type execDeltas struct {
	order []string
	m     map[string]*outcome
}

// outcome is a change to an execution's success, failure and skipped
// counters.
type outcome struct{ success, failure, skipped int }

var (
	countSuccess = outcome{success: 1}
	countFailure = outcome{failure: 1}
	countSkipped = outcome{skipped: 1}
)

// outcomeOf is how a result counts toward its execution.
func outcomeOf(exitCode int64, skipped bool) outcome {
	switch {
	case skipped:
		return countSkipped
	case exitCode == 0:
		return countSuccess
	}
	return countFailure
}

func (d *execDeltas) add(execID string, o outcome) {
	if execID == "" {
		return
	}
	if d.m == nil {
		d.m = map[string]*outcome{}
	}
	v, ok := d.m[execID]
	if !ok {
		v = new(outcome)
		d.m[execID] = v
		d.order = append(d.order, execID)
	}
	v.success += o.success
	v.failure += o.failure
	v.skipped += o.skipped
}

func (d *execDeltas) flush(ctx context.Context, tx *sql.Tx) error {
	if len(d.order) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, sqlExecutionDelta)
	if err != nil {
		return fmt.Errorf("prepare execution counters: %w", err)
	}
	defer st.Close()
	for _, id := range d.order {
		v := d.m[id]
		if _, err := st.ExecContext(ctx, v.success, v.failure, v.skipped, id); err != nil {
			return fmt.Errorf("update execution %s counters: %w", id, err)
		}
	}
	return nil
}

// stmts prepares statements on first use within one transaction.
type stmts struct {
	ctx context.Context
	tx  *sql.Tx
	m   map[string]*sql.Stmt
}

func (s *stmts) exec(query string, args ...any) (sql.Result, error) {
	st, ok := s.m[query]
	if !ok {
		var err error
		st, err = s.tx.PrepareContext(s.ctx, query)
		if err != nil {
			return nil, err
		}
		if s.m == nil {
			s.m = map[string]*sql.Stmt{}
		}
		s.m[query] = st
	}
	return st.ExecContext(s.ctx, args...)
}

func (s *stmts) close() {
	for _, st := range s.m {
		st.Close()
	}
}

// apply commits one batch, then acks it. Nothing is acked unless the
// transaction, with the new offset in it, committed.
func (s *stream) apply(items []item) error {
	ctx := context.Background()
	offset := s.applied.Load()
	var res txResult
	needTx := false
	for i := range items {
		if items[i].seq > offset {
			needTx = true
			break
		}
	}
	if needTx {
		err := s.p.db.WriteTx(ctx, func(tx *sql.Tx) error {
			res = txResult{}
			return applyTx(ctx, tx, s.p.known, s.name, offset, items, &res)
		})
		if err != nil {
			return fmt.Errorf("apply %s batch: %w", s.name, err)
		}
	}
	for i := range items {
		if err := items[i].msg.Ack(); err != nil {
			// The row is committed; a lost ack only means a redelivery,
			// which the offset skips.
			s.log.Debug("projector ack failed", "seq", items[i].seq, "err", err)
		}
	}
	s.committed(items, res)
	return nil
}

// applyTx applies the items above offset within tx, in order, and stores
// the new offset in the same transaction.
func applyTx(ctx context.Context, tx *sql.Tx, known *knownValues, stream string, offset uint64, items []item, res *txResult) error {
	st := &stmts{ctx: ctx, tx: tx}
	defer st.close()

	state, err := lookup(ctx, tx, offset, items)
	if err != nil {
		return err
	}
	var deltas execDeltas
	pcs := map[string]bool{}
	jobs := map[string]bool{}
	res.lastSeq = offset
	for i := range items {
		it := &items[i]
		if it.seq <= offset {
			continue
		}
		res.lastSeq = max(res.lastSeq, it.seq)
		res.applied++
		reject := func(why error) error {
			if _, err := st.exec(sqlReject, stream, int64(it.seq), it.subject, why.Error(), it.payload,
				it.size, store.FormatTime(it.published)); err != nil {
				return fmt.Errorf("store reject %d: %w", it.seq, err)
			}
			res.rejects++
			return nil
		}
		why := it.reject
		if why == nil {
			why = otherSender(it, state)
		}
		switch {
		case why != nil:
			if err := reject(why); err != nil {
				return err
			}
		case it.result != nil:
			if err := applyResult(st, it, state, &deltas, res); err != nil {
				return err
			}
			if it.objReject != nil {
				// Stored with a note in place of the output, and recorded.
				if err := reject(it.objReject); err != nil {
					return err
				}
			}
			pcs[it.result.PCID] = true
			if j := str(it.result.ManifestID); j != "" {
				jobs[j] = true
			}
		case it.started != nil:
			if err := applyStarted(st, it, state, &deltas, res); err != nil {
				return err
			}
			pcs[it.started.PCID] = true
			if j := str(it.started.ManifestID); j != "" {
				jobs[j] = true
			}
		case it.exec != nil:
			if err := applyExecution(st, it, res); err != nil {
				return err
			}
		}
	}
	if err := deltas.flush(ctx, tx); err != nil {
		return err
	}
	var pcList, jobList []string
	for pc := range pcs {
		pcList = append(pcList, pc)
	}
	for j := range jobs {
		jobList = append(jobList, j)
	}
	res.pcIDs, res.jobIDs, res.gen = known.unknown(pcList, jobList)
	if err := insertDistinct(ctx, tx, res.pcIDs, res.jobIDs); err != nil {
		return err
	}
	if res.lastSeq > offset {
		if _, err := st.exec(sqlOffset, stream, int64(res.lastSeq)); err != nil {
			return fmt.Errorf("store offset: %w", err)
		}
	}
	return nil
}

// otherSender is why a result or started event naming a result_id that
// another pc_id sent first is rejected: the first sender keeps the row (no
// merging of two PCs' reports).
func otherSender(it *item, state map[string]*rowState) error {
	id, pc := "", ""
	switch {
	case it.result != nil:
		id, pc = it.result.ResultID, it.result.PCID
	case it.started != nil:
		id, pc = it.started.ResultID, it.started.PCID
	default:
		return nil
	}
	if rs := state[id]; rs != nil && rs.pcID != "" && rs.pcID != pc {
		return fmt.Errorf("result_id %s belongs to pc_id %q; this message says %q", id, rs.pcID, pc)
	}
	return nil
}

// lookup reads, in one query, the state of the rows the batch touches.
func lookup(ctx context.Context, tx *sql.Tx, offset uint64, items []item) (map[string]*rowState, error) {
	var ids []string
	for i := range items {
		it := &items[i]
		switch {
		case it.seq <= offset:
		case it.result != nil:
			ids = append(ids, it.result.ResultID)
		case it.started != nil:
			ids = append(ids, it.started.ResultID)
		}
	}
	state := make(map[string]*rowState, len(ids))
	if len(ids) == 0 {
		return state, nil
	}
	js, _ := json.Marshal(ids)
	rows, err := tx.QueryContext(ctx, sqlLookup, string(js))
	if err != nil {
		return nil, fmt.Errorf("look up rows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var rs rowState
		var exec sql.NullString
		if err := rows.Scan(&id, &rs.finished, &rs.reaped, &exec, &rs.pcID); err != nil {
			return nil, fmt.Errorf("look up rows: %w", err)
		}
		rs.execID = exec.String
		state[id] = &rs
	}
	return state, rows.Err()
}

func applyResult(st *stmts, it *item, state map[string]*rowState, deltas *execDeltas, res *txResult) error {
	r := it.result
	finished := r.FinishedAt
	if finished.IsZero() {
		// finished_at NULL means in flight; a result is never that.
		finished = it.published
	}
	rec := store.FormatTime(it.published)
	rs := state[r.ResultID]
	switch {
	case rs == nil:
		insert := sqlInsertResult
		if r.Skipped {
			insert = sqlInsertSkippedResult
		}
		if _, err := st.exec(insert, r.ResultID, r.RequestID, nullStr(r.ExecID), r.PCID, r.ExitCode,
			r.Stdout, r.Stderr, store.NullTime(r.StartedAt), store.FormatTime(finished), rec,
			nullStr(r.ManifestID)); err != nil {
			return fmt.Errorf("insert result %s: %w", r.ResultID, err)
		}
		res.inserted++
		rs = &rowState{execID: str(r.ExecID), pcID: r.PCID}
		state[r.ResultID] = rs
	case rs.finished && !rs.reaped:
		return nil // a redelivered result: counted already
	default:
		if _, err := st.exec(sqlUpdateResult, r.ExitCode, r.Stdout, r.Stderr, store.FormatTime(finished),
			nullStr(r.ManifestID), nullStr(r.ExecID), store.NullTime(r.StartedAt), rec, r.Skipped, r.ResultID); err != nil {
			return fmt.Errorf("update result %s: %w", r.ResultID, err)
		}
		if rs.execID == "" {
			rs.execID = str(r.ExecID)
		}
		if rs.reaped {
			// The reaper counted a failure; the real result replaces it.
			deltas.add(rs.execID, outcome{failure: -1})
		}
	}
	rs.finished, rs.reaped = true, false
	deltas.add(rs.execID, outcomeOf(r.ExitCode, r.Skipped))
	return nil
}

func applyStarted(st *stmts, it *item, state map[string]*rowState, deltas *execDeltas, res *txResult) error {
	e := it.started
	rec := store.FormatTime(it.published)
	execID := e.ExecID
	rs := state[e.ResultID]
	if rs == nil {
		if _, err := st.exec(sqlInsertStarted, e.ResultID, e.RequestID, nullIfEmpty(execID), e.PCID,
			store.NullTime(e.StartedAt), rec, nullStr(e.ManifestID), nullStr(e.Version)); err != nil {
			return fmt.Errorf("insert started %s: %w", e.ResultID, err)
		}
		res.inserted++
		state[e.ResultID] = &rowState{execID: execID, pcID: e.PCID}
	} else {
		if _, err := st.exec(sqlUpdateStarted, nullStr(e.Version), store.NullTime(e.StartedAt),
			nullIfEmpty(execID), nullStr(e.ManifestID), rec, e.ResultID); err != nil {
			return fmt.Errorf("update started %s: %w", e.ResultID, err)
		}
		if rs.execID == "" {
			rs.execID = execID
		}
		execID = rs.execID
	}
	deltas.add(execID, outcome{}) // pending -> running
	return nil
}

func applyExecution(st *stmts, it *item, res *txResult) error {
	e := it.exec
	initiated := e.InitiatedAt
	if initiated.IsZero() {
		initiated = it.published
	}
	var target any
	if len(e.Target) > 0 {
		target = string(e.Target)
	}
	var timeout any
	if e.TimeoutSecs > 0 {
		timeout = e.TimeoutSecs
	}
	var deadline any
	if e.DeadlineAt != nil {
		deadline = store.NullTime(*e.DeadlineAt)
	}
	r, err := st.exec(sqlInsertExecution, e.ExecID, e.JobID, nullIfEmpty(e.Version), nullIfEmpty(e.InitiatedBy),
		store.FormatTime(initiated), e.TargetCount, nullIfEmpty(e.RequestID), target, timeout, deadline)
	if err != nil {
		return fmt.Errorf("insert execution %s: %w", e.ExecID, err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return nil // a republished record: the row stands
	}
	res.execs++
	if _, err := st.exec(sqlCountExecution, e.ExecID); err != nil {
		return fmt.Errorf("count execution %s: %w", e.ExecID, err)
	}
	if _, err := st.exec(sqlExecutionStatus, e.ExecID); err != nil {
		return fmt.Errorf("status of execution %s: %w", e.ExecID, err)
	}
	return nil
}

// insertDistinct keeps the distinct-value tables the results filters use
// current, skipping values known to be there already.
func insertDistinct(ctx context.Context, tx *sql.Tx, pcIDs, jobIDs []string) error {
	for _, t := range []struct {
		query string
		vals  []string
	}{
		{`INSERT OR IGNORE INTO result_pc_ids (pc_id) VALUES (?)`, pcIDs},
		{`INSERT OR IGNORE INTO result_job_ids (job_id) VALUES (?)`, jobIDs},
	} {
		if len(t.vals) == 0 {
			continue
		}
		st, err := tx.PrepareContext(ctx, t.query)
		if err != nil {
			return fmt.Errorf("prepare distinct values: %w", err)
		}
		for _, v := range t.vals {
			if _, err := st.ExecContext(ctx, v); err != nil {
				st.Close()
				return fmt.Errorf("insert distinct value: %w", err)
			}
		}
		st.Close()
	}
	return nil
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func nullStr(p *string) any { return nullIfEmpty(str(p)) }

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// committed updates the in-memory figures after a batch committed.
func (s *stream) committed(items []item, res txResult) {
	if res.lastSeq > s.applied.Load() {
		s.applied.Store(res.lastSeq)
	}
	var last *item
	for i := range items {
		if items[i].seq > 0 {
			last = &items[i]
		}
	}
	if last != nil {
		s.pending.Store(last.pending)
		if last.seq <= s.applied.Load() {
			s.appliedAt.Store(last.published.UnixNano())
		}
	}
	s.markCurrent()
	s.p.known.add(res.gen, res.pcIDs, res.jobIDs)
	s.p.rowsResults.Add(int64(res.inserted))
	s.p.rowsExecutions.Add(int64(res.execs))
	s.rejects.Add(uint64(res.rejects))
	s.count.Add(uint64(res.applied))
	s.rate.add(time.Now(), res.applied)
	s.progress()
}
