package results

import (
	"context"
	"database/sql"
	"errors"
	"regexp"
	"unicode/utf8"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
)

// Outputs can be megabytes (agents move those over 256 KiB to the object
// store and the projector reads them back inline) while every reply must
// fit one NATS message. So the list shows previews, the detail a head and a
// tail, and the whole output is read in pages (Output).
const (
	// PreviewChars is how much of stdout/stderr a list row shows, in
	// characters, as upstream.
	PreviewChars = 200
	// Around the first match of a stdout/stderr regex, as upstream.
	SnippetBefore, SnippetMatch, SnippetAfter = 80, 240, 80
	// DetailWhole is the largest output (bytes, per stream) the detail
	// shows whole; past it, the first and the last DetailPart bytes.
	DetailWhole = 256 << 10
	DetailPart  = 128 << 10
	// MaxOutputPage is the largest page of Output, in bytes.
	MaxOutputPage = 256 << 10
	// replyMargin is kept free under max_payload for the reply's framing.
	replyMargin = 1 << 10
)

// Snippet is the text around the first match of an output regex.
type Snippet struct {
	Before       string `json:"before"`
	Matched      string `json:"matched"`
	After        string `json:"after"`
	ClippedStart bool   `json:"clipped_start"`
	ClippedEnd   bool   `json:"clipped_end"`
}

// headChars is s cut to its first n characters (never inside one), and
// whether anything was cut.
func headChars(s string, n int) (string, bool) {
	for i := range s {
		if n == 0 {
			return s[:i], true
		}
		n--
	}
	return s, false
}

// tailChars is s cut to its last n characters, and whether anything was
// cut.
func tailChars(s string, n int) (string, bool) {
	i := len(s)
	for ; i > 0 && n > 0; n-- {
		_, size := utf8.DecodeLastRuneInString(s[:i])
		i -= size
	}
	return s[i:], i > 0
}

// snippet is upstream's context rule around the first match of re in s;
// nil when re does not match (the row passed an SQL filter, so it should).
func snippet(re *regexp.Regexp, s string) *Snippet {
	loc := re.FindStringIndex(s)
	if loc == nil {
		return nil
	}
	var sn Snippet
	var cutMatch, moreAfter bool
	sn.Before, sn.ClippedStart = tailChars(s[:loc[0]], SnippetBefore)
	sn.Matched, cutMatch = headChars(s[loc[0]:loc[1]], SnippetMatch)
	sn.After, moreAfter = headChars(s[loc[1]:], SnippetAfter)
	sn.ClippedEnd = cutMatch || moreAfter
	return &sn
}

// shrink cuts a snippet to at most n characters on each side (n under
// the upstream sizes), for a page that does not fit otherwise.
func (sn *Snippet) shrink(n int) {
	var cut bool
	if sn.Before, cut = tailChars(sn.Before, n); cut {
		sn.ClippedStart = true
	}
	if sn.Matched, cut = headChars(sn.Matched, n); cut {
		sn.ClippedEnd = true
	}
	if sn.After, cut = headChars(sn.After, n); cut {
		sn.ClippedEnd = true
	}
}

// headBytes is the first n bytes of b, less a character cut at the end.
func headBytes(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	b = b[:n]
	for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
		if r, size := utf8.DecodeLastRune(b); r != utf8.RuneError || size != 1 {
			break
		}
		b = b[:len(b)-1]
	}
	return string(b)
}

// tailBytes is the last n bytes of b, less a character cut at the start.
func tailBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	for i := 0; i < utf8.UTFMax-1 && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
		b = b[1:]
	}
	return string(b)
}

// fitList encodes a list page within budget bytes. When the page with
// PreviewChars previews does not fit (a limit of 1000 rows of multi-byte
// or control-character output can reach a few MiB), every preview and
// snippet is cut shorter, marked truncated, until it does: the page keeps
// its rows, so paging with before stays right. A page that does not fit
// even without previews answers the too-large error of services/api.
func fitList(rows []Row, budget int) ([]byte, error) {
	b, err := api.Marshal(rows)
	for n := PreviewChars / 2; err == nil && len(b) > budget && n >= 0; n /= 2 {
		for i := range rows {
			rows[i].shrink(n)
		}
		b, err = api.Marshal(rows)
		if n == 0 {
			break
		}
	}
	return b, err
}

func (r *Row) shrink(n int) {
	var cut bool
	if r.Stdout, cut = headChars(r.Stdout, n); cut {
		r.StdoutTruncated = true
	}
	if r.Stderr, cut = headChars(r.Stderr, n); cut {
		r.StderrTruncated = true
	}
	for _, sn := range []*Snippet{r.StdoutMatch, r.StderrMatch} {
		if sn != nil {
			sn.shrink(n)
		}
	}
}

// fitDetail encodes a detail within budget bytes: when its head and tail
// do not fit (output full of characters JSON escapes, a server with a
// small max_payload), both are cut by half until they do.
func fitDetail(r Row, budget int) ([]byte, error) {
	b, err := api.Marshal(r)
	for n := DetailPart / 2; err == nil && len(b) > budget && n > 0; n /= 2 {
		r.Stdout, r.StdoutTail, r.StdoutTruncated = cutParts(r.Stdout, r.StdoutTail, r.StdoutTruncated, n)
		r.Stderr, r.StderrTail, r.StderrTruncated = cutParts(r.Stderr, r.StderrTail, r.StderrTruncated, n)
		b, err = api.Marshal(r)
	}
	return b, err
}

// cutParts keeps at most n bytes of a head and of a tail; a whole output
// (not truncated) becomes its own head and tail.
func cutParts(head, tail string, truncated bool, n int) (string, string, bool) {
	if !truncated {
		if len(head) <= 2*n {
			return head, tail, false
		}
		tail = head
	}
	return headBytes([]byte(head), n), tailBytes([]byte(tail), n), true
}

// detailSQL reads one result with each output whole up to DetailWhole
// bytes, else its first and last DetailPart bytes, and the full sizes:
// octet_length reads a value's size without reading the value.
var detailSQL = `SELECT result_id, request_id, exec_id, pc_id, exit_code,
	CASE WHEN octet_length(stdout) <= ` + itoa(DetailWhole) + ` THEN stdout ELSE substr(CAST(stdout AS BLOB), 1, ` + itoa(DetailPart) + `) END,
	CASE WHEN octet_length(stderr) <= ` + itoa(DetailWhole) + ` THEN stderr ELSE substr(CAST(stderr AS BLOB), 1, ` + itoa(DetailPart) + `) END,
	started_at, finished_at, job_id, version, octet_length(stdout), octet_length(stderr),
	CASE WHEN octet_length(stdout) > ` + itoa(DetailWhole) + ` THEN substr(CAST(stdout AS BLOB), -` + itoa(DetailPart) + `) END,
	CASE WHEN octet_length(stderr) > ` + itoa(DetailWhole) + ` THEN substr(CAST(stderr AS BLOB), -` + itoa(DetailPart) + `) END
	FROM execution_results WHERE result_id = ?`

// Detail is one result by id (also the derived id of a legacy row), or
// 404: each output whole when it is at most DetailWhole bytes, else its
// head (stdout) and tail (stdout_tail) with stdout_truncated; the full
// sizes are stdout_bytes and stderr_bytes, and Output reads the rest.
func Detail(ctx context.Context, db *store.DB, resultID string) (Row, error) {
	if resultID == "" {
		return Row{}, api.BadRequest("parameter result_id: required")
	}
	stmt, err := db.ReadStmt(ctx, detailSQL)
	if err != nil {
		return Row{}, queryError(ctx, "result detail", err)
	}
	var r Row
	var stdout, stderr, stdoutTail, stderrTail []byte
	err = scanBase(stmt.QueryRowContext(ctx, resultID), &r, &stdout, &stderr, &r.StdoutBytes, &r.StderrBytes, &stdoutTail, &stderrTail)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Row{}, api.NotFound("result %s not found", resultID)
	case err != nil:
		return Row{}, queryError(ctx, "result detail", err)
	}
	if r.StdoutBytes > DetailWhole {
		r.Stdout, r.StdoutTail, r.StdoutTruncated = headBytes(stdout, DetailPart), tailBytes(stdoutTail, DetailPart), true
	} else {
		r.Stdout = string(stdout)
	}
	if r.StderrBytes > DetailWhole {
		r.Stderr, r.StderrTail, r.StderrTruncated = headBytes(stderr, DetailPart), tailBytes(stderrTail, DetailPart), true
	} else {
		r.Stderr = string(stderr)
	}
	return r, nil
}

// OutputParams asks for one page of a result's output.
type OutputParams struct {
	ResultID string `json:"result_id"`
	Stream   string `json:"stream"` // stdout | stderr
	Offset   int64  `json:"offset"` // bytes
	Limit    int    `json:"limit"`  // bytes; 0 = MaxOutputPage
}

// OutputPage is a page of an output: Data (base64 in JSON, so a page may
// cut a character and the pages still join byte for byte) starts at
// Offset; Total is the whole output's size. The next page starts at
// Offset + len(Data); past the end Data is empty.
type OutputPage struct {
	ResultID string `json:"result_id"`
	Stream   string `json:"stream"`
	Offset   int64  `json:"offset"`
	Total    int64  `json:"total"`
	Data     []byte `json:"data"`
}

// outputSQL reads a byte range of one output column and its size.
var outputSQL = map[string]string{
	"stdout": `SELECT octet_length(stdout), substr(CAST(stdout AS BLOB), ? + 1, ?) FROM execution_results WHERE result_id = ?`,
	"stderr": `SELECT octet_length(stderr), substr(CAST(stderr AS BLOB), ? + 1, ?) FROM execution_results WHERE result_id = ?`,
}

// Output reads one page of a result's stdout or stderr, at most maxPage
// bytes (MaxOutputPage when 0 or more).
func Output(ctx context.Context, db *store.DB, p OutputParams, maxPage int) (OutputPage, error) {
	if maxPage <= 0 || maxPage > MaxOutputPage {
		maxPage = MaxOutputPage
	}
	q, ok := outputSQL[p.Stream]
	switch {
	case p.ResultID == "":
		return OutputPage{}, api.BadRequest("parameter result_id: required")
	case !ok:
		return OutputPage{}, api.BadRequest("parameter stream: must be stdout or stderr, got %q", p.Stream)
	case p.Offset < 0:
		return OutputPage{}, api.BadRequest("parameter offset: must not be negative, got %d", p.Offset)
	case p.Limit < 0 || p.Limit > maxPage:
		return OutputPage{}, api.BadRequest("parameter limit: must be between 1 and %d bytes (0 or absent means %d), got %d", maxPage, maxPage, p.Limit)
	case p.Limit == 0:
		p.Limit = maxPage
	}
	stmt, err := db.ReadStmt(ctx, q)
	if err != nil {
		return OutputPage{}, queryError(ctx, "result output", err)
	}
	page := OutputPage{ResultID: p.ResultID, Stream: p.Stream, Offset: p.Offset, Data: []byte{}}
	var data []byte
	err = stmt.QueryRowContext(ctx, p.Offset, p.Limit, p.ResultID).Scan(&page.Total, &data)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return OutputPage{}, api.NotFound("result %s not found", p.ResultID)
	case err != nil:
		return OutputPage{}, queryError(ctx, "result output", err)
	}
	if data != nil {
		page.Data = data
	}
	return page, nil
}

// pageFor is the largest output page whose reply (base64, 4 bytes per 3)
// fits in maxPayload.
func pageFor(maxPayload int64) int {
	return int(min(MaxOutputPage, (maxPayload-replyMargin)/4*3))
}
