package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/kanade-go/kanade/services/api"
)

// statusClientClosed is logged when the client went away before the reply
// (nginx's convention); nothing is sent.
const statusClientClosed = 499

// serveEndpoint turns one HTTP request into one NATS request and its reply
// into the HTTP response. Without a body, the path and query parameters
// are the JSON request; with one, the body is the request and the
// parameters go in api.ParamHeaderPrefix headers (read by api.Params).
func (g *Gateway) serveEndpoint(w http.ResponseWriter, r *http.Request, ep *endpoint) {
	id := IdentityOf(r)
	// Page features first, then the role, in upstream's order.
	if id != nil && ep.Tier != api.TierPublic {
		if text := featureAllowed(ep.Route, r.Method, id.Features); text != "" {
			textError(w, http.StatusForbidden, text)
			return
		}
	}
	if status, text := allowed(ep.Route, id); status != 0 {
		textError(w, status, text)
		return
	}
	if ep.Subject == outputSubject && r.Method == http.MethodGet {
		g.serveOutput(w, r) // a whole output, streamed from pages
		return
	}
	params, err := requestParams(r, ep)
	if err != nil {
		textError(w, http.StatusBadRequest, err.Error())
		return
	}
	msg := &nats.Msg{Subject: ep.Subject}
	body, status, err := g.readBody(w, r)
	if err != nil {
		textError(w, status, err.Error())
		return
	}
	if len(bytes.TrimSpace(body)) == 0 {
		msg.Data, err = json.Marshal(params)
		if err != nil {
			textError(w, http.StatusInternalServerError, "encode request: "+err.Error())
			return
		}
	} else {
		// A body is the client's document (a manifest, an exec target): it
		// goes through byte for byte, JSON or YAML alike, and the
		// parameters travel beside it, never inside it.
		msg.Data = body
		passHeaders(msg, r, params)
	}
	// Who calls, for the audit trail and the services' own checks; the
	// client cannot set NATS headers, only the gateway does.
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	if id != nil {
		msg.Header.Set(api.HeaderActor, id.User)
	}
	msg.Header.Set(api.HeaderAddr, clientAddr(r))
	if src := strings.TrimSpace(r.Header.Get("X-Kanade-Source")); src != "" && len(src) <= 64 {
		msg.Header.Set(api.HeaderSource, src)
	}

	if ep.Paged && r.Method == http.MethodGet && !r.URL.Query().Has("limit") && !r.URL.Query().Has(api.ParamAfter) {
		g.servePaged(w, r, ep, msg, params) // the whole array, streamed from pages
		return
	}
	timeout := g.o.APITimeout
	if ep.Timeout > timeout {
		// A route that answers late (a run waits for its result): the
		// connection's write deadline moves with it.
		timeout = ep.Timeout
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + 10*time.Second))
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	reply, err := g.o.Conn.RequestMsgWithContext(ctx, msg)
	if err != nil {
		g.requestFailed(w, r, ep.Service, ep.Subject, timeout, err)
		return
	}
	if serviceError(w, ep.Service, reply) {
		return
	}
	status = replyHeaders(w.Header(), reply.Header)
	if len(reply.Data) == 0 {
		// An empty body is 204, unless the service said what it is (an
		// agent's empty log is a 200 text/plain).
		if status == 0 && w.Header().Get("Content-Type") == "" {
			status = http.StatusNoContent
		}
		if status != 0 {
			w.WriteHeader(status)
		}
		return
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(reply.Data)))
	if status != 0 {
		w.WriteHeader(status)
	}
	w.Write(reply.Data)
}

// replyHeaders copies the headers a service set on a successful reply
// (api.Reply) onto the response: Content-Type, Content-Disposition, a
// page's api.HeaderNext and X-* headers (X-Total-Count), except the security headers the gateway
// sets itself. It returns the api.HeaderStatus status, 0 when absent or
// not a 2xx-5xx code.
func replyHeaders(h http.Header, rh nats.Header) int {
	status := 0
	for k, vs := range rh {
		if len(vs) == 0 {
			continue
		}
		ck := http.CanonicalHeaderKey(k)
		switch {
		case ck == http.CanonicalHeaderKey(api.HeaderStatus):
			if n, err := strconv.Atoi(vs[0]); err == nil && n >= 200 && n <= 599 {
				status = n
			}
		case ck == "Content-Type", ck == "Content-Disposition", ck == http.CanonicalHeaderKey(api.HeaderNext),
			strings.HasPrefix(ck, "X-") && !securityHeader[ck]:
			h.Set(ck, vs[0])
		}
	}
	return status
}

// securityHeader are the X- headers the gateway's middleware owns.
var securityHeader = map[string]bool{"X-Content-Type-Options": true, "X-Frame-Options": true}

// requestFailed answers a NATS request that got no reply.
func (g *Gateway) requestFailed(w http.ResponseWriter, r *http.Request, service, subject string, timeout time.Duration, err error) {
	switch {
	case r.Context().Err() != nil:
		// The client is gone; the request was cancelled with it.
		w.WriteHeader(statusClientClosed)
	case errors.Is(err, nats.ErrNoResponders):
		textError(w, http.StatusServiceUnavailable, fmt.Sprintf("service %s is not running (no responders on %s)", service, subject))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		textError(w, http.StatusGatewayTimeout, fmt.Sprintf("service %s did not answer %s within %s", service, subject, timeout))
	default:
		g.log.Warn("nats request failed", "subject", subject, "err", err)
		textError(w, http.StatusServiceUnavailable, fmt.Sprintf("service %s unreachable: %v", service, err))
	}
}

// serviceError answers a service's error reply with its status and text,
// and reports whether reply was one.
func serviceError(w http.ResponseWriter, service string, reply *nats.Msg) bool {
	code := reply.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		return false
	}
	text := string(reply.Data)
	if text == "" {
		text = reply.Header.Get(micro.ErrorHeader)
	}
	status, err := strconv.Atoi(code)
	if err != nil || status < 400 || status > 599 {
		textError(w, http.StatusBadGateway, fmt.Sprintf("service %s answered error %s: %s", service, code, text))
		return true
	}
	if ra := reply.Header.Get(api.HeaderRetryAfter); ra != "" {
		w.Header().Set("Retry-After", ra)
	}
	if reply.Header.Get("Content-Type") == "application/json" {
		// An error whose body is a document (health/fleet's 503).
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(reply.Data)))
		w.WriteHeader(status)
		w.Write(reply.Data)
		return true
	}
	textError(w, status, text)
	return true
}

// requestParams collects the path and query parameters; int parameters
// become numbers. A path parameter wins over a query parameter of the same
// name: the path names the resource.
func requestParams(r *http.Request, ep *endpoint) (map[string]any, error) {
	params := make(map[string]any, len(ep.params)+2)
	if r.URL.RawQuery != "" {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, fmt.Errorf("query string: %v", err)
		}
		for k, vs := range q {
			v := vs[len(vs)-1]
			if !ep.ints[k] {
				params[k] = v
				continue
			}
			if v == "" {
				continue // "?limit=" means the default
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("parameter %s: must be an integer, not %q", k, v)
			}
			params[k] = n
		}
	}
	for _, name := range ep.params {
		params[name] = r.PathValue(name)
	}
	return params, nil
}

// readBody reads a request body up to MaxBody; past it the answer is 413.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	if r.Body == nil || r.Body == http.NoBody || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil, 0, nil
	}
	if r.ContentLength > g.o.MaxBody {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes", g.o.MaxBody)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.o.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes", g.o.MaxBody)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("read request body: %v", err)
	}
	return body, 0, nil
}

// passHeaders carries the body's Content-Type and the parameters in NATS
// headers, for a body passed through verbatim. Header values are text:
// int parameters were already checked, and api.Params turns them back
// into numbers.
func passHeaders(msg *nats.Msg, r *http.Request, params map[string]any) {
	msg.Header = nats.Header{}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		msg.Header.Set("Content-Type", ct)
	}
	for k, v := range params {
		msg.Header.Set(api.ParamHeaderPrefix+k, fmt.Sprint(v))
	}
}

// textError answers with a plain-text body, as the services' errors do.
func textError(w http.ResponseWriter, status int, text string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(text)))
	w.WriteHeader(status)
	io.WriteString(w, text)
}
