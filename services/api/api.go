// Package api is the shape every kanade micro service shares: endpoints on
// subjects under "kanade.", errors that carry an HTTP status, JSON request
// decoding that names the bad parameter, a bounded pool so one slow request
// does not queue the rest, replies that never exceed the connection's
// max_payload (one that would answers an error naming the limit), the NATS
// micro protocol with stats recorded where each reply is sent
// (instance.go), and endpoint metadata naming the HTTP route the gateway
// maps onto it.
//
// A service package keeps its logic in plain Go and binds it here in a thin
// micro.go; the gateway learns the routes from $SRV.INFO.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Version is the backend's version: micro service versions and /api/version.
const Version = "0.1.0"

// Metadata keys on endpoints, read by the gateway.
const (
	// MetaHTTP names the route: "GET /api/results/{result_id}". Path
	// parameters become keys of the JSON request body, or headers beside
	// a body the client sent (see ParamHeaderPrefix and Params).
	MetaHTTP = "http"
	// MetaIntParams lists query parameters (comma separated) that the
	// gateway must send as JSON numbers.
	MetaIntParams = "int_params"
	// MetaTier is the least role that may call the endpoint: TierViewer,
	// TierOperator or TierAdmin (TierPublic for login and the like). The
	// gateway refuses a route whose tier it does not know.
	MetaTier = "tier"
	// MetaAudit is the audit action of a mutating endpoint ("job.put").
	MetaAudit = "audit"
	// MetaTimeout is how long the gateway waits for a reply on a route
	// that answers later than its default (a Go duration: "1h0m15s").
	MetaTimeout = "timeout"
	// MetaPaged ("true") says the endpoint answers a list one page at a
	// time (see Paged, HeaderNext): the gateway streams every page as one
	// JSON array to an HTTP client that asked for no limit.
	MetaPaged = "paged"
)

// Role tiers, lowest first, as upstream tiers its routes.
const (
	TierPublic   = "public"
	TierViewer   = "viewer"
	TierOperator = "operator"
	TierAdmin    = "admin"
)

// Headers the gateway (or any trusted caller) sets on a request to name
// who is calling; services put them in audit records.
const (
	HeaderActor = "Kanade-Actor"
	HeaderAddr  = "Kanade-Addr"
)

// ParamHeaderPrefix names the NATS headers that carry the path and query
// parameters when the gateway passes a request body through verbatim (a
// JSON or YAML manifest, an exec target): "Kanade-Param-job_id: backup".
// The body stays the client's, byte for byte; Params reads both.
const ParamHeaderPrefix = "Kanade-Param-"

// Error is an error with the HTTP status it answers with; its message is
// the plain-text body.
type Error struct {
	Status  int
	Message string
	// JSON says Message is a JSON document (a 503 health rollup): the
	// reply says so in its Content-Type, and the gateway passes it on.
	JSON bool
	// RetryAfter, in seconds, is sent as the Retry-After header (a 429).
	RetryAfter int
}

func (e *Error) Error() string { return e.Message }

// Errorf makes an *Error.
func Errorf(status int, format string, args ...any) error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// BadRequest is a 400.
func BadRequest(format string, args ...any) error {
	return Errorf(http.StatusBadRequest, format, args...)
}

// NotFound is a 404.
func NotFound(format string, args ...any) error { return Errorf(http.StatusNotFound, format, args...) }

// Conflict is a 409.
func Conflict(format string, args ...any) error { return Errorf(http.StatusConflict, format, args...) }

// Unavailable is a 503.
func Unavailable(format string, args ...any) error {
	return Errorf(http.StatusServiceUnavailable, format, args...)
}

// Request is one call of an endpoint.
type Request struct {
	Subject string
	Data    []byte
	Header  micro.Headers

	log        *slog.Logger // the endpoint's, for Params; nil in a hand-made Request
	ints       []string     // the endpoint's IntParams, for Params
	maxPayload int64        // the connection's; 0 in a hand-made Request
}

// Actor is who makes the request: "nats:<user>" when nats-server named
// the caller (a request from another account, through a service import:
// the API callers' accounts), whatever the request says; else as the
// caller named it in HeaderActor (the gateway, the backend's own tools);
// "" when nobody did. (Services refuse a stamped request that is not an
// API caller's own before any handler sees it.)
func (r Request) Actor() string {
	if ci, ok := r.natsCaller(); ok {
		if ci.User != "" {
			return "nats:" + ci.User
		}
		return "nats:@" + ci.Account // an import without share names no user
	}
	return r.Header.Get(HeaderActor)
}

// Addr is the caller's network address: as the gateway saw it, or as
// nats-server saw a caller from another account; "" when unknown.
func (r Request) Addr() string {
	if ci, ok := r.natsCaller(); ok {
		return ci.Host
	}
	return r.Header.Get(HeaderAddr)
}

// CallerAccountPrefix starts the NATS account of each API caller, the
// user alone in it (natsauth.CallerAccount: "USER_" + user).
const CallerAccountPrefix = "USER_"

// natsClientInfo is the part of nats-server's Nats-Request-Info this
// package reads.
type natsClientInfo struct {
	Account string `json:"acc"`
	User    string `json:"user"`
	Host    string `json:"host"`
}

// caller tells a request an API caller sent itself: the account is its
// own. A service's answer that a caller routed back in as a request (its
// reply naming a subject its account imports) is stamped with the
// service's own account and user instead.
func (ci natsClientInfo) caller() bool {
	return ci.User != "" && ci.Account == CallerAccountPrefix+ci.User
}

// natsCaller reads HeaderRequestInfo. nats-server sets it on every request
// that crosses into this account through a service import, replacing one
// the requester wrote, so it names the caller; within the backend's own
// account nobody but the backend's users can set it.
func (r Request) natsCaller() (natsClientInfo, bool) {
	info := r.Header.Get(HeaderRequestInfo)
	if info == "" {
		return natsClientInfo{}, false
	}
	var ci natsClientInfo
	if json.Unmarshal([]byte(info), &ci) != nil || (ci.User == "" && ci.Account == "") {
		// Unreadable: nobody to name, and not the header's claim either.
		return natsClientInfo{Account: "unknown"}, true
	}
	return ci, true
}

// ContentType is the request's Content-Type header ("" if none).
func (r Request) ContentType() string { return r.Header.Get("Content-Type") }

// Handler answers a request. It returns a value to encode as JSON, raw JSON
// as []byte or json.RawMessage, or nil for an empty reply (HTTP 204). An
// error that is an *Error answers with its status; any other is a 500 and
// is logged.
type Handler func(ctx context.Context, r Request) (any, error)

// Endpoint is one request/reply capability.
type Endpoint struct {
	Name      string // micro endpoint name: A-Za-z0-9_- only
	Subject   string // "kanade.results.list"
	HTTP      string // "GET /api/results"; empty = not on HTTP
	IntParams []string
	// Tier is the least role allowed to call it (TierViewer, ...); every
	// endpoint declares one.
	Tier string
	// Audit names the action of a mutating endpoint ("job.put"); such an
	// endpoint leaves an audit record, with its actor, before it answers.
	// Empty for reads.
	Audit string
	// AuditTarget names the request parameter that is the audit record's
	// target ("job_id"); empty when there is none.
	AuditTarget string
	// Timeout, when set, tells the gateway to wait this long for the
	// reply instead of its default (see MetaTimeout).
	Timeout time.Duration
	// Paged says the endpoint answers a JSON array one page at a time:
	// each reply fits max_payload (PageBudget, FitPage), names the next
	// page's cursor in HeaderNext, and the request's ParamAfter asks for
	// the page after it (see MetaPaged).
	Paged   bool
	Handler Handler
}

// Service describes a micro service.
type Service struct {
	Name        string
	Description string
	Endpoints   []Endpoint
	// Workers bounds concurrent handlers across the service's endpoints
	// (default 8): micro calls a handler one request at a time per
	// endpoint, so without a pool one slow query queues every other.
	Workers int
	// Timeout is each request's deadline (default 9 s, under the
	// gateway's 10 s so the service answers first).
	Timeout  time.Duration
	Metadata map[string]string
	Logger   *slog.Logger
	// Audit records every call of an endpoint with an Audit action before
	// its handler runs; nil records nothing (a service alone in a test).
	Audit Auditor
}

// Running is a started service.
type Running struct {
	svc  *instance
	wg   sync.WaitGroup
	ctx  context.Context
	end  context.CancelFunc
	wait time.Duration
}

// Start registers the service on nc and starts answering.
func Start(nc *nats.Conn, s Service) (*Running, error) {
	if s.Workers <= 0 {
		s.Workers = 8
	}
	if s.Timeout <= 0 {
		s.Timeout = 9 * time.Second
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	log := s.Logger.With("service", s.Name)
	svc, err := newInstance(nc, s)
	if err != nil {
		return nil, fmt.Errorf("add service %s: %w", s.Name, err)
	}
	ctx, end := context.WithCancel(context.Background())
	r := &Running{svc: svc, ctx: ctx, end: end, wait: s.Timeout}
	sem := make(chan struct{}, s.Workers)
	for _, ep := range s.Endpoints {
		meta := map[string]string{}
		if ep.HTTP != "" {
			meta[MetaHTTP] = ep.HTTP
		}
		if len(ep.IntParams) > 0 {
			meta[MetaIntParams] = strings.Join(ep.IntParams, ",")
		}
		if ep.Tier != "" {
			meta[MetaTier] = ep.Tier
		}
		if ep.Audit != "" {
			meta[MetaAudit] = ep.Audit
		}
		if ep.Timeout > 0 {
			meta[MetaTimeout] = ep.Timeout.String()
		}
		if ep.Paged {
			meta[MetaPaged] = "true"
		}
		h := ep.Handler
		elog := log.With("endpoint", ep.Name)
		handle := func(st *endpoint, m *nats.Msg, at time.Time) {
			sem <- struct{}{}
			r.wg.Add(1)
			go func() {
				defer func() { <-sem; r.wg.Done() }()
				rctx, cancel := context.WithTimeout(ctx, s.Timeout)
				defer cancel()
				respond(rctx, nc, elog, ep, s.Audit, inbound{m, at, st}, h)
			}()
		}
		if err := svc.addEndpoint(nc, ep.Name, ep.Subject, meta, handle); err != nil {
			svc.stop(0)
			end()
			return nil, fmt.Errorf("add endpoint %s.%s: %w", s.Name, ep.Name, err)
		}
	}
	// The subscriptions must reach the server before Start returns, or a
	// request sent right after (from another connection) finds no responders.
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		r.Stop()
		return nil, fmt.Errorf("start service %s: %w", s.Name, err)
	}
	return r, nil
}

// Stop leaves the queue group and waits for requests in flight to answer.
func (r *Running) Stop() error {
	err := r.svc.stop(r.wait)
	r.wg.Wait()
	r.end()
	return err
}

// Info is the micro service's info, for tests and status pages.
func (r *Running) Info() micro.Info { return r.svc.Info() }

// Stats is the micro service's stats, as $SRV.STATS answers them.
func (r *Running) Stats() micro.Stats { return r.svc.Stats() }

// inbound is a request as it arrived, for respond.
type inbound struct {
	m  *nats.Msg
	at time.Time // when the subscription delivered it: stats time from here
	ep *endpoint
}

func (r inbound) Subject() string        { return r.m.Subject }
func (r inbound) Reply() string          { return r.m.Reply }
func (r inbound) Data() []byte           { return r.m.Data }
func (r inbound) Headers() micro.Headers { return micro.Headers(r.m.Header) }

// ReplySubjectAllowed tells whether a service may answer on reply. NATS
// checks a request's subject against the caller's permissions, never its
// reply, and the service publishes its answer with its own rights: a
// caller naming "$KV.agent_groups.PC2" or "commands.pc.PC2" as the reply
// would have the service write there. Only inboxes are answered:
// "_INBOX…" (nats.go's, the CLI's, custom inbox prefixes) and "_R_."
// (replies across an account import).
func ReplySubjectAllowed(reply string) bool {
	return strings.HasPrefix(reply, "_INBOX") || strings.HasPrefix(reply, "_R_.")
}

// respond runs h and answers on the request's reply subject, once. A
// reply over the connection's max_payload would be dropped and leave the
// caller waiting out its timeout, so it is answered with an error naming
// the limit instead. The endpoint's stats count the answer when it is sent.
func respond(ctx context.Context, nc *nats.Conn, log *slog.Logger, ep Endpoint, aud Auditor, req inbound, h Handler) {
	send := func(m *nats.Msg) {
		defer func() { req.ep.record(time.Since(req.at), m.Header) }()
		if req.Reply() == "" {
			return // a plain publish wants no answer
		}
		if !ReplySubjectAllowed(req.Reply()) {
			log.Warn("reply refused: not an inbox", "reply", req.Reply())
			return
		}
		m.Subject = req.Reply()
		err := nc.PublishMsg(m)
		if errors.Is(err, nats.ErrMaxPayload) {
			e := tooLarge(len(m.Data), nc.MaxPayload())
			log.Error("reply too large", "bytes", len(m.Data), "max_payload", nc.MaxPayload())
			m = errorMsg(e)
			m.Subject = req.Reply()
			err = nc.PublishMsg(m)
		}
		if err != nil {
			log.Warn("reply failed", "err", err)
		}
	}
	fail := func(e *Error) { send(errorMsg(e)) }
	defer func() {
		if p := recover(); p != nil {
			log.Error("handler panicked", "panic", p)
			fail(&Error{Status: http.StatusInternalServerError, Message: "internal error"})
		}
	}()
	r := Request{Subject: req.Subject(), Data: req.Data(), Header: req.Headers(), log: log, ints: ep.IntParams, maxPayload: nc.MaxPayload()}
	if ci, ok := r.natsCaller(); ok && !ci.caller() {
		// Stamped, but not by an API caller's own request: the answer of
		// some service, sent by a caller to a reply subject its account
		// imports, coming back as a request under the service's name.
		log.Warn("request refused: it came through an import from an account that is not an API caller's",
			"account", ci.Account, "user", ci.User)
		fail(&Error{Status: http.StatusForbidden, Message: "request refused: not sent by an API caller of its own account"})
		return
	}
	rec := auditStart(ctx, aud, ep, r)
	if rec.err != nil {
		log.Error("audit record failed; request refused", "err", rec.err)
		fail(&Error{Status: http.StatusServiceUnavailable, Message: "audit trail unavailable, nothing was changed: " + rec.err.Error()})
		return
	}
	out, err := h(ctx, r)
	rec.end(ctx, log, err)
	if err != nil {
		var e *Error
		switch {
		case errors.As(err, &e):
		case errors.Is(err, context.DeadlineExceeded):
			e = &Error{Status: http.StatusServiceUnavailable, Message: "request timed out"}
		default:
			log.Error("request failed", "err", err)
			e = &Error{Status: http.StatusInternalServerError, Message: "internal error"}
		}
		fail(e)
		return
	}
	var hdr nats.Header
	if rep, ok := out.(Reply); ok {
		hdr, out = rep.headers(), rep.Body
		if b, ok := out.(string); ok {
			out = []byte(b)
		}
	}
	var body []byte
	switch v := out.(type) {
	case nil:
	case []byte:
		body = v
	case json.RawMessage:
		body = v
	default:
		body, err = Marshal(v)
		if err != nil {
			log.Error("encode reply", "err", err)
			fail(&Error{Status: http.StatusInternalServerError, Message: "internal error"})
			return
		}
	}
	send(&nats.Msg{Header: hdr, Data: body})
}

// HeaderRetryAfter on an error reply is the HTTP Retry-After (a 429).
const HeaderRetryAfter = "Retry-After"

// Created answers body with 201 Created.
func Created(body any) Reply { return Reply{Status: http.StatusCreated, Body: body} }

// errorMsg is the reply for e: micro's error headers and the message as
// the plain-text body.
func errorMsg(e *Error) *nats.Msg {
	m := &nats.Msg{
		Header: nats.Header{
			micro.ErrorHeader:     []string{e.Message},
			micro.ErrorCodeHeader: []string{strconv.Itoa(e.Status)},
		},
		Data: []byte(e.Message),
	}
	if e.JSON {
		m.Header.Set("Content-Type", "application/json")
	}
	if e.RetryAfter > 0 {
		m.Header.Set(HeaderRetryAfter, strconv.Itoa(e.RetryAfter))
	}
	return m
}

// tooLarge is the answer for a reply of n bytes that cannot be sent.
func tooLarge(n int, max int64) *Error {
	return &Error{Status: http.StatusInternalServerError, Message: fmt.Sprintf(
		"reply too large: %d bytes, over the NATS max_payload of %d bytes; ask for less (a smaller limit or page, a narrower filter)", n, max)}
}

// Marshal is json.Marshal without HTML escaping: "<" stays one byte, not
// six ("\u003c"), so replies and stored JSON keep the size of their text.
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
