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
	var stdout, stderr store.Output
	var finished sql.NullString
	var exit sql.NullInt64
	stmt, err := db.ReadStmt(ctx, `SELECT pc_id, finished_at, exit_code, stdout, stderr FROM execution_results WHERE result_id = ?`)
	if err != nil {
		return TailReply{}, queryError(ctx, "tail", err)
	}
	err = stmt.QueryRowContext(ctx, resultID).Scan(&pcID, &finished, &exit, &stdout, &stderr)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return TailReply{}, api.NotFound("result %s not found", resultID)
	case err != nil:
		return TailReply{}, queryError(ctx, "tail", err)
	}
	if finished.Valid {
		return TailReply{Stdout: string(stdout), Stderr: string(stderr), ExitCode: nullInt(exit)}, nil
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
	return TailReply{
		Running:         rep.Running,
		Live:            true,
		Stdout:          rep.Stdout,
		Stderr:          rep.Stderr,
		StdoutTruncated: rep.StdoutTruncated,
		StderrTruncated: rep.StderrTruncated,
	}, nil
}
