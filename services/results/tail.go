package results

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// TailReply is a run's output as the tail endpoint shows it, in one of three
// shapes: finished (running:false, live:false, the stored output and exit
// code), live (live:true, the agent's buffer), or waiting (running:true,
// live:false, no output: the agent did not serve a buffer, keep polling).
type TailReply struct {
	Running         bool   `json:"running"`
	Live            bool   `json:"live"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	ExitCode        *int64 `json:"exit_code"`

	// why is set on a waiting reply: what went wrong with the agent, for
	// the log, never for the client.
	why string
}

// Tail answers the tail of one result. A finished row is served from the
// store without asking anyone; a run in flight asks its agent on
// job.tail.{pc_id} for up to timeout. Agent trouble of any kind (offline,
// no responders, a bad reply, found:false) is the waiting shape, never an
// error. An unknown id is a 404.
func Tail(ctx context.Context, db *store.DB, nc *nats.Conn, resultID string, timeout time.Duration) (TailReply, error) {
	if resultID == "" {
		return TailReply{}, api.BadRequest("parameter result_id: required")
	}
	var pcID string
	var stdout, stderr []byte
	var stdoutBytes, stderrBytes int64
	var finished sql.NullString
	var exit sql.NullInt64
	// A finished run's tail is the last DetailPart bytes of each output.
	stmt, err := db.ReadStmt(ctx, `SELECT pc_id, finished_at, exit_code, substr(CAST(stdout AS BLOB), -`+itoa(DetailPart)+`),
		substr(CAST(stderr AS BLOB), -`+itoa(DetailPart)+`), octet_length(stdout), octet_length(stderr)
		FROM execution_results WHERE result_id = ?`)
	if err != nil {
		return TailReply{}, queryError(ctx, "tail", err)
	}
	err = stmt.QueryRowContext(ctx, resultID).Scan(&pcID, &finished, &exit, &stdout, &stderr, &stdoutBytes, &stderrBytes)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return TailReply{}, api.NotFound("result %s not found", resultID)
	case err != nil:
		return TailReply{}, queryError(ctx, "tail", err)
	}
	if finished.Valid {
		return TailReply{Stdout: tailBytes(stdout, DetailPart), Stderr: tailBytes(stderr, DetailPart), ExitCode: nullInt(exit),
			StdoutTruncated: stdoutBytes > DetailPart, StderrTruncated: stderrBytes > DetailPart}, nil
	}

	waiting := func(why string) (TailReply, error) { return TailReply{Running: true, why: why}, nil }
	if !wire.ValidToken(pcID) {
		return waiting("pc_id is not a subject token")
	}
	if timeout <= 0 {
		timeout = DefaultTailTimeout
	}
	body, err := json.Marshal(wire.JobTailRequest{ResultID: resultID})
	if err != nil {
		return waiting(err.Error())
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, wire.JobTail(pcID), body)
	if err != nil {
		return waiting("job.tail request: " + err.Error())
	}
	var rep wire.JobTailReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return waiting("job.tail reply: " + err.Error())
	}
	if !rep.Found {
		return waiting("agent has no buffer for this run")
	}
	// The agent's buffer is bounded by its own connection; kept to the
	// same DetailPart as a finished tail all the same.
	t := TailReply{Running: rep.Running, Live: true, StdoutTruncated: rep.StdoutTruncated, StderrTruncated: rep.StderrTruncated}
	var cut bool
	if t.Stdout, cut = tailString(rep.Stdout, DetailPart); cut {
		t.StdoutTruncated = true
	}
	if t.Stderr, cut = tailString(rep.Stderr, DetailPart); cut {
		t.StderrTruncated = true
	}
	return t, nil
}

func tailString(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	return tailBytes([]byte(s), n), true
}

// fitTail encodes a tail within budget bytes, halving both outputs' tails
// until it fits.
func fitTail(t TailReply, budget int) ([]byte, error) {
	b, err := api.Marshal(t)
	for n := DetailPart / 2; err == nil && len(b) > budget && n > 0; n /= 2 {
		var cut bool
		if t.Stdout, cut = tailString(t.Stdout, n); cut {
			t.StdoutTruncated = true
		}
		if t.Stderr, cut = tailString(t.Stderr, n); cut {
			t.StderrTruncated = true
		}
		b, err = api.Marshal(t)
	}
	return b, err
}
