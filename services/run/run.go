// Package run runs an ad-hoc script on one PC and waits for its result
// (upstream's POST /api/run): a Command "adhoc-run" to commands.pc.{pc_id},
// and the first ExecResult on results.{request_id}. The agent publishes that
// result through JetStream, so it also lands in RESULTS and the projector
// stores it like any other (job_id "adhoc-run").
package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/wire"
)

// Defaults and bounds of a run.
const (
	// DefaultTimeoutSecs is the run's timeout when the body names none.
	DefaultTimeoutSecs = 60
	// MaxTimeoutSecs bounds timeout_secs: the HTTP request is held open for
	// the whole run, so longer work belongs in a job and an exec.
	MaxTimeoutSecs = 3600
	// DefaultGrace is how long past timeout_secs the result is waited for
	// (upstream: 10 s), for the agent to start, report and publish.
	DefaultGrace = 10 * time.Second
)

// publishWait bounds the wait for EXEC's ack of the Command (the request's
// own deadline is the run's, up to an hour).
const publishWait = 10 * time.Second

// Request is the body of POST /api/run, as upstream's.
type Request struct {
	PCID        string  `json:"pc_id"`
	Shell       string  `json:"shell"`
	Script      *string `json:"script"`
	TimeoutSecs *int64  `json:"timeout_secs"`
	ExecID      string  `json:"exec_id"`
	JobID       string  `json:"job_id"` // the old name of exec_id
	JitterSecs  *int64  `json:"jitter_secs"`
	RunAs       string  `json:"run_as"`
}

// Runner publishes ad-hoc Commands and waits for their results.
type Runner struct {
	Conn   *nats.Conn
	JS     jetstream.JetStream
	Signer *signing.Signer // nil: unsigned, as upstream without a key
	// Envelopes wraps the Command in a v2 envelope for a PC that reports
	// it (nil: a bare Command, as upstream's run).
	Envelopes *signing.Envelopes
	// Grace is added to timeout_secs for the wait (default DefaultGrace).
	Grace time.Duration
}

// unprocessable is upstream's 422 for a body that is JSON but not a run.
func unprocessable(format string, args ...any) error {
	return api.Errorf(http.StatusUnprocessableEntity, format, args...)
}

// Command validates req and builds its Command (with a new request_id).
func (req Request) Command() (wire.Command, error) {
	switch {
	case req.PCID == "":
		return wire.Command{}, unprocessable("missing field `pc_id`")
	case req.Script == nil:
		return wire.Command{}, unprocessable("missing field `script`")
	case !wire.ValidToken(req.PCID):
		return wire.Command{}, api.BadRequest("invalid pc_id %q: no dots, wildcards or spaces", req.PCID)
	}
	shell := req.Shell
	switch shell {
	case "", "ps":
		shell = wire.ShellPowershell
	}
	if !wire.ValidShell(shell) {
		return wire.Command{}, api.BadRequest("unknown shell %q (use powershell, pwsh, cmd, or sh)", req.Shell)
	}
	runAs := req.RunAs
	if runAs == "" {
		runAs = "system"
	}
	if !wire.ValidRunAs(runAs) {
		return wire.Command{}, unprocessable("run_as: unknown variant `%s`, expected one of `system`, `user`, `system_gui`", req.RunAs)
	}
	timeout := int64(DefaultTimeoutSecs)
	if req.TimeoutSecs != nil {
		timeout = *req.TimeoutSecs
	}
	switch {
	case timeout < 0:
		return wire.Command{}, unprocessable("timeout_secs: invalid value %d, expected u64", timeout)
	case timeout > MaxTimeoutSecs:
		return wire.Command{}, api.BadRequest("timeout_secs %d is over %d: run longer work as a job (POST /api/exec)", timeout, MaxTimeoutSecs)
	}
	if req.JitterSecs != nil && *req.JitterSecs < 0 {
		return wire.Command{}, unprocessable("jitter_secs: invalid value %d, expected u64", *req.JitterSecs)
	}
	cmd := wire.Command{
		ID: wire.AdhocRunID, Version: wire.AdhocRunVersion, RequestID: uuid.NewString(),
		Shell: shell, Script: *req.Script, TimeoutSecs: timeout, JitterSecs: req.JitterSecs,
		RunAs: runAs, Staleness: wire.Staleness{Mode: "cached"},
	}
	execID := req.ExecID
	if execID == "" {
		execID = req.JobID
	}
	if execID != "" {
		if !wire.ValidToken(execID) {
			return wire.Command{}, api.BadRequest("invalid exec_id %q: no dots, wildcards or spaces", execID)
		}
		cmd.ExecID = &execID
	}
	return cmd, nil
}

// Run publishes req's Command to its PC and returns the ExecResult JSON
// exactly as the agent sent it; 408 when none comes within timeout_secs
// plus the grace. The Command stays in EXEC, so an agent that was offline
// may still run it later: its result then shows only in the results list.
func (r *Runner) Run(ctx context.Context, req Request) (json.RawMessage, error) {
	cmd, err := req.Command()
	if err != nil {
		return nil, err
	}
	data, err := api.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	resultSubject := wire.Results(cmd.RequestID)
	// Subscribed and flushed before the publish, so a fast agent's result
	// cannot arrive before anyone listens.
	sub, err := r.Conn.SubscribeSync(resultSubject)
	if err != nil {
		return nil, api.Errorf(http.StatusInternalServerError, "subscribe results: %v", err)
	}
	defer sub.Unsubscribe()
	if err := r.Conn.FlushWithContext(ctx); err != nil {
		return nil, api.Errorf(http.StatusInternalServerError, "subscribe results: %v", err)
	}

	subject := wire.CommandsPC(req.PCID)
	if data, err = r.Envelopes.Body(subject, data, time.Now()); err != nil {
		return nil, api.Errorf(http.StatusInternalServerError, "publish to %s: envelope: %v", req.PCID, err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if err := r.Signer.Sign(msg); err != nil {
		return nil, api.Errorf(http.StatusInternalServerError, "publish to %s: sign: %v", req.PCID, err)
	}
	// Through JetStream: EXEC keeps it for an agent that is offline, and
	// the ack says it is stored. The request_id de-duplicates a retry.
	pctx, cancelPub := context.WithTimeout(ctx, publishWait)
	_, err = r.JS.PublishMsg(pctx, msg, jetstream.WithMsgID(cmd.RequestID))
	cancelPub()
	if err != nil {
		return nil, api.Errorf(http.StatusInternalServerError, "publish to %s: %v", req.PCID, err)
	}

	grace := r.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	wctx, cancel := context.WithTimeout(ctx, time.Duration(cmd.TimeoutSecs)*time.Second+grace)
	defer cancel()
	m, err := sub.NextMsgWithContext(wctx)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return nil, api.Errorf(http.StatusRequestTimeout, "timeout waiting for result on %s", resultSubject)
	case errors.Is(err, nats.ErrBadSubscription), errors.Is(err, nats.ErrConnectionClosed):
		return nil, api.Errorf(http.StatusInternalServerError, "result subscription closed")
	case err != nil:
		return nil, err
	}
	if _, err := wire.DecodeResult(m.Data); err != nil {
		return nil, api.Errorf(http.StatusInternalServerError, "decode ExecResult: %v", err)
	}
	return json.RawMessage(m.Data), nil
}
