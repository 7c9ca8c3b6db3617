package agents

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/wire"
)

// PingReply answers a ping: the agent's fresh heartbeat as it sent it.
type PingReply struct {
	Heartbeat json.RawMessage `json:"heartbeat"`
}

// DefaultPingWait is upstream's wait_secs default.
const DefaultPingWait = 5

// LogsWait is how long logs waits for the agent, as upstream.
const LogsWait = 10 * time.Second

// LiveTimeout is the deadline of a ping or a logs fetch, beyond the
// gateway's default: logs waits upstream's 10 s, ping up to 15 s of
// wait_secs. Their routes carry it (api.Endpoint.Timeout).
const LiveTimeout = 16 * time.Second

// within caps a wait at the request's deadline, less the time to answer.
func within(ctx context.Context, d time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl)-300*time.Millisecond)
	}
	return max(d, 100*time.Millisecond)
}

func checkPC(pc string) error {
	if !wire.ValidToken(pc) {
		return api.BadRequest("invalid pc_id %q: must be one subject token (no dots, wildcards or spaces)", pc)
	}
	return nil
}

// Ping asks agents.{pc}.ping with an empty payload and waits waitSecs
// (at least 1; capped by the request deadline): 408 on silence, as
// upstream, with its texts. The agents table is not written.
func Ping(ctx context.Context, nc *nats.Conn, pc string, waitSecs int64) (PingReply, error) {
	if err := checkPC(pc); err != nil {
		return PingReply{}, err
	}
	waitSecs = max(waitSecs, 1)
	wait := within(ctx, time.Duration(waitSecs)*time.Second)
	subject := wire.Ping(pc)
	rctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	m, err := nc.RequestWithContext(rctx, subject, nil)
	switch {
	case err == nil:
	case errors.Is(err, nats.ErrNoResponders):
		return PingReply{}, api.Errorf(http.StatusRequestTimeout, "nats request %s: %v", subject, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		if wait < time.Duration(waitSecs)*time.Second {
			// The request's deadline came first (the gateway's --api-timeout).
			return PingReply{}, api.Errorf(http.StatusRequestTimeout, "no ping reply from %s within %s (wait_secs=%d is capped by the request deadline)", pc, wait.Round(100*time.Millisecond), waitSecs)
		}
		return PingReply{}, api.Errorf(http.StatusRequestTimeout, "no ping reply from %s within %ds", pc, waitSecs)
	default:
		return PingReply{}, api.Errorf(http.StatusInternalServerError, "nats request %s: %v", subject, err)
	}
	if _, err := wire.DecodeHeartbeat(m.Data); err != nil {
		return PingReply{}, api.Errorf(http.StatusInternalServerError, "%v", err)
	}
	return PingReply{Heartbeat: m.Data}, nil
}

// Logs asks logs.fetch.{pc} for the last tail lines of the agent's log and
// relays the text as it came: 504 when the agent does not answer in time,
// 502 for any other failure, no responders included (upstream's texts).
func Logs(ctx context.Context, nc *nats.Conn, pc string, tail *int64) (api.Reply, error) {
	if err := checkPC(pc); err != nil {
		return api.Reply{}, err
	}
	n := uint32(wire.DefaultLogLines)
	if tail != nil {
		if *tail < 0 || *tail > 1<<32-1 {
			return api.Reply{}, api.BadRequest("tail must be an integer from 0 to 4294967295")
		}
		n = uint32(*tail)
	}
	body, _ := json.Marshal(wire.LogsRequest{TailLines: &n})
	subject := wire.LogsFetch(pc)
	wait := within(ctx, LogsWait)
	rctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	m, err := nc.RequestWithContext(rctx, subject, body)
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return api.Reply{}, api.Errorf(http.StatusGatewayTimeout, "agent '%s' didn't reply within %s", pc, wait.Round(time.Second))
	default:
		return api.Reply{}, api.Errorf(http.StatusBadGateway, "%s: %v", subject, err)
	}
	return api.Text(string(m.Data)), nil
}

// forgetSubject tells every node's agents service to drop a PC from its
// own projection: each node keeps its own SQLite.
func forgetSubject(pc string) string { return "kanade.agents.forgotten." + pc }
