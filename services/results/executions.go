package results

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// Execution is one deployment (an exec or a scheduler fire) with its
// counters, as upstream shows it.
type Execution struct {
	ExecID       string  `json:"exec_id"`
	JobID        string  `json:"job_id"`
	Version      *string `json:"version"`
	InitiatedBy  *string `json:"initiated_by"`
	InitiatedAt  *string `json:"initiated_at"`
	TargetCount  int64   `json:"target_count"`
	SuccessCount int64   `json:"success_count"`
	FailureCount int64   `json:"failure_count"`
	// SkippedCount is beyond upstream's shape: results an agent chose not
	// to run (skipped: true), counted toward completion but neither as a
	// success nor as a failure.
	SkippedCount int64  `json:"skipped_count"`
	Status       string `json:"status"`
}

// ExecutionParams is an executions list request.
type ExecutionParams struct {
	Limit  int    `json:"limit"`
	JobID  string `json:"job_id"` // exact job id
	Status string `json:"status"` // pending | running | completed | expired
}

// ExecutionResult is one run of an execution, without its output.
type ExecutionResult struct {
	ResultID  string `json:"result_id"`
	RequestID string `json:"request_id"`
	PCID      string `json:"pc_id"`
	ExitCode  *int64 `json:"exit_code"`
	// Skipped is upstream's: the agent deliberately did not run the
	// script (exit_code gives the reason: 122, 124-127).
	Skipped    bool    `json:"skipped"`
	StartedAt  *string `json:"started_at"`
	FinishedAt *string `json:"finished_at"`
}

// ExecutionDetails is an execution with its runs. A broadcast to many
// thousands of PCs has more runs than one reply holds: then Results is the
// first part, ResultsTruncated is set and Next is the `after` that asks
// for the rest.
type ExecutionDetails struct {
	Execution        Execution         `json:"execution"`
	Results          []ExecutionResult `json:"results"`
	ResultsTruncated bool              `json:"results_truncated,omitempty"`
	Next             string            `json:"next,omitempty"`
}

// ExecutionDetailParams asks for one execution; After ("<pc_id>,<result_id>"
// of the last run shown, Next of the previous reply) continues its runs.
type ExecutionDetailParams struct {
	ExecID string `json:"exec_id"`
	After  string `json:"after"`
}

// executionStatus is the status shown, computed at read time from the
// stored one so that it is right even when nothing was projected lately:
// completed and expired stay; an execution whose every target answered is
// completed; one still pending or running past ExpiresAt is expired;
// otherwise the stored pending or running. The query's one argument is
// now, in stored form.
const executionStatus = `CASE
	WHEN status IN ('completed', 'expired') THEN status
	WHEN target_count > 0 AND success_count + failure_count + skipped_count >= target_count THEN 'completed'
	WHEN ` + ExpiresAt + ` < ? THEN 'expired'
	ELSE status END`

// ExpiresAt is the SQL expression (stored time form) of when an unfinished
// execution of the executions table expires: a target that never answers
// (an unknown or retired PC) would keep it running forever. deadline_at is
// when its last run must have ended (the Command's deadline or its
// initiation plus jitter, then the run timeout and the reaper's margin; set
// by whoever fires it); one still pending (no result at all: agents may be
// offline and fetch the Command later) waits at least an hour, as
// upstream. Rows without deadline_at get the hour plus the timeout and the
// margin.
const ExpiresAt = `(CASE WHEN status = 'pending' THEN max(coalesce(deadline_at, ''), ` + pendingFloor + `)
	ELSE coalesce(deadline_at, ` + noDeadline + `) END)`

// Stored times (store.TimeLayout) an hour after initiated_at, and an hour
// plus the timeout and the reaper's margin after it.
const (
	pendingFloor = `strftime('%Y-%m-%dT%H:%M:%S.000000000Z', initiated_at, '+3600 seconds')`
	noDeadline   = `strftime('%Y-%m-%dT%H:%M:%S.000000000Z', initiated_at, '+' || (3600 + 120 + 3 * coalesce(timeout_secs, 0) / 2) || ' seconds')`
)

const executionColumns = `exec_id, job_id, version, initiated_by, initiated_at, target_count, success_count, failure_count, skipped_count, ` + executionStatus

func scanExecution(sc interface{ Scan(...any) error }) (Execution, error) {
	var e Execution
	var version, by, at sql.NullString
	if err := sc.Scan(&e.ExecID, &e.JobID, &version, &by, &at, &e.TargetCount, &e.SuccessCount, &e.FailureCount, &e.SkippedCount, &e.Status); err != nil {
		return Execution{}, err
	}
	e.Version, e.InitiatedBy, e.InitiatedAt = nullString(version), nullString(by), store.APITime(at)
	return e, nil
}

func (p ExecutionParams) validate() (int, error) {
	limit, err := checkLimit(p.Limit)
	if err != nil {
		return 0, err
	}
	switch p.Status {
	case "", "pending", "running", "completed", "expired":
	default:
		return 0, api.BadRequest("parameter status: must be pending, running, completed or expired, got %q", p.Status)
	}
	return limit, nil
}

// ListExecutions lists executions, newest initiated first.
func ListExecutions(ctx context.Context, db *store.DB, p ExecutionParams, now time.Time) ([]Execution, error) {
	limit, err := p.validate()
	if err != nil {
		return nil, err
	}
	n := store.FormatTime(now)
	q := `SELECT ` + executionColumns + ` FROM executions`
	args := []any{n}
	var conds []string
	if p.JobID != "" {
		conds = append(conds, "job_id = ?")
		args = append(args, p.JobID)
	}
	if p.Status != "" {
		conds = append(conds, "("+executionStatus+") = ?")
		args = append(args, n, p.Status)
	}
	for i, c := range conds {
		if i == 0 {
			q += " WHERE " + c
		} else {
			q += " AND " + c
		}
	}
	q += ` ORDER BY initiated_at DESC, exec_id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, queryError(ctx, "list executions", err)
	}
	defer rows.Close()
	out := []Execution{}
	for rows.Next() {
		e, err := scanExecution(rows)
		if err != nil {
			return nil, fmt.Errorf("list executions: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, queryError(ctx, "list executions", err)
	}
	return out, nil
}

// ExecutionDetail is one execution with its runs (ordered by pc_id), or 404.
func ExecutionDetail(ctx context.Context, db *store.DB, execID string, now time.Time) (ExecutionDetails, error) {
	return ExecutionDetailAfter(ctx, db, ExecutionDetailParams{ExecID: execID}, now)
}

// ExecutionDetailAfter is ExecutionDetail from p.After on.
func ExecutionDetailAfter(ctx context.Context, db *store.DB, p ExecutionDetailParams, now time.Time) (ExecutionDetails, error) {
	execID := p.ExecID
	afterPC, afterID, _ := strings.Cut(p.After, ",")
	if p.After != "" && afterID == "" {
		return ExecutionDetails{}, api.BadRequest("parameter after: must be \"<pc_id>,<result_id>\" (next of the previous reply), got %q", p.After)
	}
	if execID == "" {
		return ExecutionDetails{}, api.BadRequest("parameter exec_id: required")
	}
	e, err := scanExecution(db.R.QueryRowContext(ctx, `SELECT `+executionColumns+` FROM executions WHERE exec_id = ?`, store.FormatTime(now), execID))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ExecutionDetails{}, api.NotFound("execution %s not found", execID)
	case err != nil:
		return ExecutionDetails{}, queryError(ctx, "execution detail", err)
	}
	rows, err := db.R.QueryContext(ctx, `SELECT result_id, request_id, pc_id, exit_code, skipped, started_at, finished_at
		FROM execution_results WHERE exec_id = ? AND (pc_id, result_id) > (?, ?) ORDER BY pc_id, result_id`, execID, afterPC, afterID)
	if err != nil {
		return ExecutionDetails{}, queryError(ctx, "execution detail", err)
	}
	defer rows.Close()
	out := ExecutionDetails{Execution: e, Results: []ExecutionResult{}}
	for rows.Next() {
		var r ExecutionResult
		var exit sql.NullInt64
		var started, finished sql.NullString
		if err := rows.Scan(&r.ResultID, &r.RequestID, &r.PCID, &exit, &r.Skipped, &started, &finished); err != nil {
			return ExecutionDetails{}, fmt.Errorf("execution detail: %w", err)
		}
		r.ExitCode = nullInt(exit)
		r.StartedAt, r.FinishedAt = store.APITime(started), store.APITime(finished)
		out.Results = append(out.Results, r)
	}
	if err := rows.Err(); err != nil {
		return ExecutionDetails{}, queryError(ctx, "execution detail", err)
	}
	return out, nil
}

// Kill publishes an empty kill.{exec_id} for every execution of the job
// that may still have runs: every one not completed (pending, running, and
// expired too, since a run that started before the deadline can outlive
// it; a kill that reaches nothing is harmless), and any exec with a run in
// flight that the executions table does not know. It returns the exec ids
// it signalled; none is not an error.
func Kill(ctx context.Context, db *store.DB, nc *nats.Conn, jobID string, log *slog.Logger) ([]string, error) {
	if jobID == "" {
		return nil, api.BadRequest("parameter job_id: required")
	}
	rows, err := db.R.QueryContext(ctx, `
		SELECT exec_id FROM executions WHERE job_id = ? AND (`+executionStatus+`) <> 'completed'
		UNION
		SELECT exec_id FROM execution_results INDEXED BY idx_results_running
			WHERE finished_at IS NULL AND job_id = ? AND exec_id IS NOT NULL
		ORDER BY exec_id`, jobID, store.FormatTime(time.Now()), jobID)
	if err != nil {
		return nil, queryError(ctx, "kill", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("kill: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, queryError(ctx, "kill", err)
	}
	var sent []string
	for _, id := range ids {
		if !wire.ValidToken(id) {
			log.Warn("kill: exec_id is not a subject token; skipped", "job_id", jobID, "exec_id", id)
			continue
		}
		if err := nc.Publish(wire.Kill(id), nil); err != nil {
			return sent, fmt.Errorf("kill: publish %s: %w", wire.Kill(id), err)
		}
		sent = append(sent, id)
	}
	if len(sent) > 0 {
		if err := nc.FlushWithContext(ctx); err != nil {
			return sent, fmt.Errorf("kill: flush: %w", err)
		}
	}
	return sent, nil
}

// fitExecution encodes d within budget bytes: when its runs do not fit,
// the first ones that do, with results_truncated and next.
func fitExecution(d ExecutionDetails, budget int) ([]byte, error) {
	b, err := api.Marshal(d)
	if err != nil || len(b) <= budget {
		return b, err
	}
	head, err := api.Marshal(ExecutionDetails{Execution: d.Execution, Results: []ExecutionResult{}, ResultsTruncated: true,
		Next: strings.Repeat("x", 2*maxCursor)})
	if err != nil {
		return nil, err
	}
	size, n := len(head), 0
	for ; n < len(d.Results); n++ {
		r, err := api.Marshal(d.Results[n])
		if err != nil {
			return nil, err
		}
		if size+len(r)+1 > budget {
			break
		}
		size += len(r) + 1
	}
	if n == 0 {
		return b, nil // not even one: the too-large error of services/api
	}
	last := d.Results[n-1]
	d.Results, d.ResultsTruncated, d.Next = d.Results[:n], true, last.PCID+","+last.ResultID
	return api.Marshal(d)
}

// maxCursor bounds what fitExecution reserves for next: a pc_id and a
// result_id are short, but come from agents.
const maxCursor = 512
