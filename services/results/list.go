package results

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
)

// Row is one result as the API shows it. exit_code and finished_at are
// null while the run is in flight. In a list, stdout and stderr are
// previews (PreviewChars) and *_match the text around an output regex's
// first match; in the detail, an output over DetailWhole bytes is its head
// in stdout and its tail in stdout_tail. *_truncated says that more
// exists, *_bytes is the whole output's size.
type Row struct {
	ResultID        string   `json:"result_id"`
	RequestID       string   `json:"request_id"`
	ExecID          *string  `json:"exec_id"`
	PCID            string   `json:"pc_id"`
	ExitCode        *int64   `json:"exit_code"`
	Stdout          string   `json:"stdout"`
	Stderr          string   `json:"stderr"`
	StartedAt       *string  `json:"started_at"`
	FinishedAt      *string  `json:"finished_at"`
	JobID           *string  `json:"job_id"`
	Version         *string  `json:"version"`
	StdoutTruncated bool     `json:"stdout_truncated"`
	StderrTruncated bool     `json:"stderr_truncated"`
	StdoutBytes     int64    `json:"stdout_bytes"`
	StderrBytes     int64    `json:"stderr_bytes"`
	StdoutMatch     *Snippet `json:"stdout_match,omitempty"`
	StderrMatch     *Snippet `json:"stderr_match,omitempty"`
	StdoutTail      string   `json:"stdout_tail,omitempty"`
	StderrTail      string   `json:"stderr_tail,omitempty"`
}

// listColumns reads a list row: the outputs as previews, unless an output
// regex needs the whole text for its snippet, and their sizes. Outputs are
// stored plain or zstd-compressed (store/outputs.go): a compressed one's
// preview is its plain *_preview column, so a list decompresses nothing
// unless an output regex asks for a snippet.
func listColumns(q *query) string {
	out := func(col, re string) string {
		if re != "" {
			return col // scanned through store.Output
		}
		return "substr(CASE WHEN typeof(" + col + ") = 'blob' THEN COALESCE(" + col + "_preview, output(" + col + ")) ELSE " +
			col + " END, 1, " + itoa(PreviewChars) + ")"
	}
	return `result_id, request_id, exec_id, pc_id, exit_code, ` + out("stdout", q.stdout) + `, ` + out("stderr", q.stderr) +
		`, started_at, finished_at, job_id, version, ` + store.OutputSizeSQL("stdout") + `, ` + store.OutputSizeSQL("stderr")
}

// A compressed output's stored preview holds at least a list's preview.
var _ [store.PreviewChars - PreviewChars]struct{}

func itoa(n int) string { return strconv.Itoa(n) }

// scanBase scans the columns every row query starts with, the two outputs
// into stdout and stderr, and the rest into more.
func scanBase(sc interface{ Scan(...any) error }, r *Row, stdout, stderr any, more ...any) error {
	var execID, startedAt, finishedAt, jobID, version sql.NullString
	var exit sql.NullInt64
	dest := append([]any{&r.ResultID, &r.RequestID, &execID, &r.PCID, &exit, stdout, stderr,
		&startedAt, &finishedAt, &jobID, &version}, more...)
	if err := sc.Scan(dest...); err != nil {
		return err
	}
	r.ExecID, r.JobID, r.Version = nullString(execID), nullString(jobID), nullString(version)
	r.StartedAt, r.FinishedAt = store.APITime(startedAt), store.APITime(finishedAt)
	r.ExitCode = nullInt(exit)
	return nil
}

// scanListRow scans a list row and makes its previews and snippets.
func (q *query) scanListRow(sc interface{ Scan(...any) error }) (Row, error) {
	var r Row
	if err := scanBase(sc, &r, (*store.Output)(&r.Stdout), (*store.Output)(&r.Stderr), &r.StdoutBytes, &r.StderrBytes); err != nil {
		return Row{}, err
	}
	if q.stdoutRE != nil {
		r.StdoutMatch = snippet(q.stdoutRE, r.Stdout)
	}
	if q.stderrRE != nil {
		r.StderrMatch = snippet(q.stderrRE, r.Stderr)
	}
	r.Stdout, _ = headChars(r.Stdout, PreviewChars)
	r.Stderr, _ = headChars(r.Stderr, PreviewChars)
	r.StdoutTruncated = int64(len(r.Stdout)) < r.StdoutBytes
	r.StderrTruncated = int64(len(r.Stderr)) < r.StderrBytes
	return r, nil
}

func nullString(s sql.NullString) *string {
	if !s.Valid {
		return nil
	}
	return &s.String
}

func nullInt(n sql.NullInt64) *int64 {
	if !n.Valid {
		return nil
	}
	return &n.Int64
}

// Params is a results list request. The JSON keys are the HTTP query
// parameters; zero values mean "no filter" (limit: 50).
type Params struct {
	Limit  int    `json:"limit"`
	PCID   string `json:"pc_id"`
	JobID  string `json:"job_id"`
	ExecID string `json:"exec_id"`
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Status string `json:"status"` // success | failure | running
	Since  string `json:"since"`  // RFC 3339 lower bound on started_at
	// Before is the cursor of the next page: "<started_at>,<result_id>" of
	// the previous page's last row (started_at as the row shows it, empty
	// when null). Rows strictly after it in list order are returned.
	Before string `json:"before"`
}

// Limits of list requests.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// DecodeList decodes and validates a list request body. Every problem is a
// 400 naming the parameter; unknown keys are ignored.
func DecodeList(data []byte) (Params, error) { return decodeList(api.Request{Data: data}) }

func decodeList(r api.Request) (Params, error) {
	var p Params
	if err := api.Params(r, &p); err != nil {
		return Params{}, err
	}
	if _, err := p.compile(); err != nil {
		return Params{}, err
	}
	return p, nil
}

// Heavy reports whether the request may have to scan rows (a regex or a
// status filter) rather than read the first page of an index.
func (p Params) Heavy() bool {
	return p.PCID != "" || p.JobID != "" || p.ExecID != "" || p.Stdout != "" || p.Stderr != "" || p.Status != ""
}

// query is a validated list request.
type query struct {
	limit              int
	values             []*valueFilter // pc_id, job_id, exec_id
	stdout, stderr     string
	stdoutRE, stderrRE *regexp.Regexp
	status             string
	since              string // stored time form; "" = none
	before             *cursor
}

type cursor struct {
	started  string // stored time form; "" = the row's started_at is null
	resultID string
}

// valueFilter is a regex on a column whose distinct values live in a small
// table: the regex is matched there, and rows are then fetched by index.
type valueFilter struct {
	param, table, index string
	nullable            bool
	pattern             string
	re                  *regexp.Regexp
	prefix              string
	exact               bool

	// resolved per query
	values    []string
	matchNull bool
	estimate  float64 // rows expected to match
}

func (p Params) compile() (*query, error) {
	limit, err := checkLimit(p.Limit)
	if err != nil {
		return nil, err
	}
	q := &query{limit: limit, status: p.Status, stdout: p.Stdout, stderr: p.Stderr}
	switch p.Status {
	case "", "success", "failure", "running":
	default:
		return nil, api.BadRequest("parameter status: must be success, failure or running, got %q", p.Status)
	}
	for _, v := range []struct {
		param, table, index, pattern string
		nullable                     bool
	}{
		{"pc_id", "result_pc_ids", "idx_results_pc", p.PCID, false},
		{"job_id", "result_job_ids", "idx_results_job", p.JobID, true},
		{"exec_id", "result_exec_ids", "idx_results_exec", p.ExecID, true},
	} {
		if v.pattern == "" {
			continue
		}
		re, err := compileRegex(v.pattern)
		if err != nil {
			return nil, err
		}
		f := &valueFilter{param: v.param, table: v.table, index: v.index, nullable: v.nullable, pattern: v.pattern, re: re}
		f.prefix, f.exact = literalShape(v.pattern)
		q.values = append(q.values, f)
	}
	for _, o := range []struct {
		pattern string
		re      **regexp.Regexp
	}{{p.Stdout, &q.stdoutRE}, {p.Stderr, &q.stderrRE}} {
		if o.pattern != "" {
			if *o.re, err = compileRegex(o.pattern); err != nil {
				return nil, err
			}
		}
	}
	if p.Since != "" {
		t, err := store.ParseTime(p.Since)
		if err != nil {
			return nil, api.BadRequest("parameter since: must be an RFC 3339 time such as 2026-05-16T00:00:00Z, got %q", p.Since)
		}
		q.since = store.FormatTime(t)
	}
	if p.Before != "" {
		c, err := parseCursor(p.Before)
		if err != nil {
			return nil, err
		}
		q.before = c
	}
	return q, nil
}

// checkLimit validates a list limit: 0 (absent) means DefaultLimit.
func checkLimit(n int) (int, error) {
	switch {
	case n == 0:
		return DefaultLimit, nil
	case n < 0 || n > MaxLimit:
		return 0, api.BadRequest("parameter limit: must be between 1 and %d (0 or absent means %d), got %d", MaxLimit, DefaultLimit, n)
	}
	return n, nil
}

// compileRegex compiles a user regex through the cache REGEXP uses. The
// 400 is upstream's text exactly, which names the pattern but not the
// parameter: a client knows which of its filters held that pattern.
func compileRegex(pattern string) (*regexp.Regexp, error) {
	re, err := store.CompileRegexp(pattern)
	if err != nil {
		return nil, api.BadRequest("invalid regex `%s`: %v", pattern, err)
	}
	return re, nil
}

func parseCursor(s string) (*cursor, error) {
	bad := api.BadRequest("parameter before: must be \"<started_at>,<result_id>\" from the last row of the previous page (started_at RFC 3339, empty when null), got %q", s)
	started, id, ok := strings.Cut(s, ",")
	if !ok || id == "" {
		return nil, bad
	}
	c := &cursor{resultID: id}
	if started != "" {
		t, err := store.ParseTime(started)
		if err != nil {
			return nil, bad
		}
		c.started = store.FormatTime(t)
	}
	return c, nil
}

// List answers a results list request: rows matching every filter, newest
// started first, at most limit of them. Every filter runs inside SQLite, so
// the limit counts matching rows whatever the table's size.
//
// Plan: a pc_id/job_id/exec_id regex is first matched against that column's
// distinct values (`^X$` is taken as the value itself, `^X` narrows them
// by a range). Then either the rows of those values are read through the
// column's index and sorted (when they are few), or the started_at index is
// walked newest first, testing membership, until limit rows match (when
// they are many, so matches come early). stdout/stderr regexes are tested
// on the rows the plan reads, so with since they only see that window.
func List(ctx context.Context, db *store.DB, p Params) ([]Row, error) {
	q, err := p.compile()
	if err != nil {
		return nil, err
	}
	rows, err := q.run(ctx, db.R)
	if err != nil {
		return nil, queryError(ctx, "list results", err)
	}
	return rows, nil
}

// queryError turns a query interrupted by the request deadline into a 503
// the operator can act on.
func queryError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return api.Unavailable("%s: the query did not finish before the request deadline; narrow `since` or add filters", what)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// walkCostFactor weighs a row read while walking the started_at index (a
// table lookup per entry) against an index entry sorted by the other plan.
const walkCostFactor = 4

func (q *query) run(ctx context.Context, r *sql.DB) ([]Row, error) {
	var total float64
	if len(q.values) > 0 {
		var n int64
		if err := r.QueryRowContext(ctx, `SELECT coalesce(max(rowid), 0) FROM execution_results`).Scan(&n); err != nil {
			return nil, err
		}
		total = float64(n)
	}
	var driver *valueFilter
	for _, f := range q.values {
		if err := f.resolve(ctx, r, total); err != nil {
			return nil, err
		}
		if len(f.values) == 0 && !f.matchNull {
			return []Row{}, nil
		}
		if f.matchNull {
			continue // NULLs are not reachable through the IN list
		}
		if driver == nil || f.exact && !driver.exact || f.exact == driver.exact && f.estimate < driver.estimate {
			driver = f
		}
	}
	// The column index pays for every matching row (then a sort); the walk
	// pays about limit * total / matching rows, each dearer.
	if driver != nil && !driver.exact && driver.estimate*driver.estimate > walkCostFactor*float64(q.limit)*total {
		driver = nil
	}
	index := "idx_results_started"
	switch {
	case driver != nil:
		index = driver.index
	case q.status == "running":
		index = "idx_results_running"
	}

	c := q.before
	switch {
	case c == nil:
		return q.fetch(ctx, r, index, "", nil, q.limit)
	case c.started == "":
		return q.fetch(ctx, r, index, "started_at IS NULL AND result_id < ?", []any{c.resultID}, q.limit)
	}
	// Rows with a null started_at sort after every other: once the dated
	// rows past the cursor run out, the page continues with them.
	rows, err := q.fetch(ctx, r, index, "(started_at, result_id) < (?, ?)", []any{c.started, c.resultID}, q.limit)
	if err != nil || len(rows) == q.limit || q.since != "" {
		return rows, err
	}
	more, err := q.fetch(ctx, r, index, "started_at IS NULL", nil, q.limit-len(rows))
	return append(rows, more...), err
}

// resolve matches the regex against the column's distinct values.
func (f *valueFilter) resolve(ctx context.Context, r *sql.DB, total float64) error {
	f.matchNull = f.nullable && f.re.MatchString("")
	var distinct int64
	if err := r.QueryRowContext(ctx, `SELECT count(*) FROM `+f.table).Scan(&distinct); err != nil {
		return fmt.Errorf("count %s: %w", f.table, err)
	}
	if f.exact {
		f.values = []string{f.prefix}
	} else {
		where, args := f.param+" REGEXP ?", []any{f.pattern}
		if f.prefix != "" {
			where += " AND " + f.param + " >= ?"
			args = append(args, f.prefix)
			if end := prefixEnd(f.prefix); end != "" {
				where += " AND " + f.param + " < ?"
				args = append(args, end)
			}
		}
		rows, err := r.QueryContext(ctx, `SELECT `+f.param+` FROM `+f.table+` WHERE `+where, args...)
		if err != nil {
			return fmt.Errorf("match %s: %w", f.table, err)
		}
		defer rows.Close()
		f.values = f.values[:0]
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				return err
			}
			f.values = append(f.values, v)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("match %s: %w", f.table, err)
		}
	}
	f.estimate = float64(len(f.values)) * total / float64(max(distinct, 1))
	return nil
}

// fetch runs one pass of the plan: the row ids in list order through the
// chosen index (only index and filter columns are read), then those rows.
func (q *query) fetch(ctx context.Context, r *sql.DB, index, extra string, extraArgs []any, limit int) ([]Row, error) {
	var conds []string
	var args []any
	for _, f := range q.values {
		cond := f.param + " IN (SELECT value FROM json_each(?))"
		var arg any
		if f.exact {
			cond, arg = f.param+" = ?", f.prefix
		} else {
			b, err := json.Marshal(f.values)
			if err != nil {
				return nil, err
			}
			arg = string(b)
		}
		if f.matchNull {
			cond = "(" + f.param + " IS NULL OR " + cond + ")"
		}
		conds = append(conds, cond)
		args = append(args, arg)
	}
	switch q.status {
	case "success":
		conds = append(conds, "exit_code = 0")
	case "failure":
		conds = append(conds, "exit_code IS NOT NULL AND exit_code <> 0")
	case "running":
		conds = append(conds, "finished_at IS NULL")
	}
	if q.since != "" {
		conds = append(conds, "started_at >= ?")
		args = append(args, q.since)
	}
	if extra != "" {
		conds = append(conds, extra)
		args = append(args, extraArgs...)
	}
	// Output regexes last: the cheap terms drop rows first. Every match
	// contains the regex's required literal, so SQLite's own instr() (or
	// LIKE, for a case-insensitive one) drops most rows before the Go regex
	// is called, a call that copies the output.
	for _, o := range [][2]string{{"stdout", q.stdout}, {"stderr", q.stderr}} {
		if o[1] == "" {
			continue
		}
		// A compressed output (a BLOB) skips the literal test: only
		// REGEXP decompresses it (and tests the literal itself).
		switch lit, fold := store.RequiredLiteral(o[1]); {
		case lit == "":
		case fold:
			conds = append(conds, "(typeof("+o[0]+") = 'blob' OR "+o[0]+` LIKE ? ESCAPE '\')`)
			args = append(args, likeContains(lit))
		default:
			conds = append(conds, "(typeof("+o[0]+") = 'blob' OR instr("+o[0]+", ?) > 0)")
			args = append(args, lit)
		}
		conds = append(conds, o[0]+" REGEXP ?")
		args = append(args, o[1])
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	args = append(args, limit)
	query := `SELECT ` + listColumns(q) + ` FROM execution_results WHERE rowid IN (` +
		`SELECT rowid FROM execution_results INDEXED BY ` + index + where +
		` ORDER BY started_at DESC, result_id DESC LIMIT ?) ORDER BY started_at DESC, result_id DESC`
	rows, err := r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]Row, 0, min(limit, 64))
	for rows.Next() {
		row, err := q.scanListRow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, row)
	}
	return out, rows.Err()
}
