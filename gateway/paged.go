package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/kanade-go/kanade/services/api"
)

// servePaged answers a paged route (api.MetaPaged) called without a limit
// with upstream's one JSON array, however long: it asks for page after
// page, following api.HeaderNext, and writes each page's items as they
// come, so neither the gateway nor the service holds the whole array. The
// first page decides the status and headers (its errors answer as any
// reply's). A failure after that aborts the response: the client sees a
// cut connection and a JSON array that never closes, never a complete-
// looking short one.
func (g *Gateway) servePaged(w http.ResponseWriter, r *http.Request, ep *endpoint, msg *nats.Msg, params map[string]any) {
	rc := http.NewResponseController(w)
	after := ""
	items := 0
	for pages := 0; ; pages++ {
		if pages > 0 {
			// Later pages follow the cursor; an offset was the first's.
			delete(params, "offset")
			params[api.ParamAfter] = after
			data, err := json.Marshal(params)
			if err != nil {
				g.pagedCut(r, ep, pages, "encode request", err)
			}
			msg = &nats.Msg{Subject: msg.Subject, Header: msg.Header, Data: data}
		}
		ctx, cancel := context.WithTimeout(r.Context(), g.o.APITimeout)
		reply, err := g.o.Conn.RequestMsgWithContext(ctx, msg)
		cancel()
		var body []byte
		if err == nil {
			body = bytes.TrimSpace(reply.Data)
		}
		isArray := len(body) >= 2 && body[0] == '[' && body[len(body)-1] == ']'
		if pages == 0 {
			switch {
			case err != nil:
				g.requestFailed(w, r, ep.Service, ep.Subject, g.o.APITimeout, err)
				return
			case serviceError(w, ep.Service, reply):
				return
			case !isArray:
				textError(w, http.StatusBadGateway, "service "+ep.Service+" answered a paged route with something other than a JSON array")
				return
			}
			status := replyHeaders(w.Header(), reply.Header)
			w.Header().Del(api.HeaderNext) // the pages' business, not the array's
			if status == 0 {
				status = http.StatusOK
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(status)
			w.Write([]byte{'['})
		} else {
			switch {
			case err != nil:
				g.pagedCut(r, ep, pages, "request", err)
			case reply.Header.Get(micro.ErrorCodeHeader) != "":
				g.pagedCut(r, ep, pages, "service error "+reply.Header.Get(micro.ErrorCodeHeader)+": "+string(reply.Data), nil)
			case !isArray:
				g.pagedCut(r, ep, pages, "page is not a JSON array", nil)
			}
		}
		if inner := bytes.TrimSpace(body[1 : len(body)-1]); len(inner) > 0 {
			// Each page gets its own write deadline: a long array to a
			// slow client may take longer than the server's WriteTimeout.
			rc.SetWriteDeadline(time.Now().Add(g.o.APITimeout + 10*time.Second))
			if items > 0 {
				w.Write([]byte{','})
			}
			if _, err := w.Write(inner); err != nil {
				return // the client went away
			}
			rc.Flush()
			items++
		}
		next := reply.Header.Get(api.HeaderNext)
		if next == "" {
			break
		}
		if next == after {
			g.pagedCut(r, ep, pages, "cursor did not move: "+next, nil)
		}
		after = next
	}
	w.Write([]byte{']'})
}

// pagedCut logs why a streamed array stops short and aborts the response.
func (g *Gateway) pagedCut(r *http.Request, ep *endpoint, page int, why string, err error) {
	g.log.Warn("paged list cut short; response aborted", "route", ep.Pattern(), "page", page, "why", why, "err", err,
		"client_gone", r.Context().Err() != nil)
	panic(http.ErrAbortHandler)
}
