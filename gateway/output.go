package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Whole outputs: GET /api/results/{result_id}/output/{stdout|stderr}, the
// route of kanade.results.output, streams one output as text/plain, read
// page by page from that endpoint, since an output can be far larger than
// one NATS message: the one route whose reply is not the NATS reply.
const outputSubject = "kanade.results.output"

// outputPage is the part of the results service's page the gateway reads.
type outputPage struct {
	Total int64  `json:"total"`
	Data  []byte `json:"data"`
}

// serveOutput writes the whole output. The first page decides the status
// (404 for an unknown result, the service's errors as the proxy maps them)
// and the Content-Length; a failure after that aborts the response, so the
// client sees a short body rather than a complete-looking wrong one.
func (g *Gateway) serveOutput(w http.ResponseWriter, r *http.Request) {
	id, stream := r.PathValue("result_id"), r.PathValue("stream")
	if stream != "stdout" && stream != "stderr" {
		textError(w, http.StatusNotFound, fmt.Sprintf("no output %q: stdout or stderr", stream))
		return
	}
	rc := http.NewResponseController(w)
	var offset, total int64
	for first := true; first || offset < total; first = false {
		page, reply, err := g.outputPage(r.Context(), id, stream, offset)
		if first {
			switch {
			case err != nil:
				g.requestFailed(w, r, "results", outputSubject, g.o.APITimeout, err)
				return
			case serviceError(w, "results", reply):
				return
			case page == nil:
				textError(w, http.StatusBadGateway, "service results answered a bad output page")
				return
			}
			total = page.Total
			h := w.Header()
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("Content-Length", strconv.FormatInt(total, 10))
			h.Set("Cache-Control", "no-store")
			if r.URL.Query().Has("download") {
				h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", id+"-"+stream+".txt"))
			}
			w.WriteHeader(http.StatusOK)
		} else if err != nil || page == nil || reply.Header.Get(micro.ErrorCodeHeader) != "" {
			g.log.Warn("output download cut short", "result_id", id, "stream", stream, "offset", offset, "err", err)
			panic(http.ErrAbortHandler)
		}
		data := page.Data
		if rest := total - offset; int64(len(data)) > rest {
			data = data[:rest] // the output grew since the first page
		}
		if len(data) == 0 && offset < total {
			g.log.Warn("output download cut short: empty page", "result_id", id, "stream", stream, "offset", offset)
			panic(http.ErrAbortHandler)
		}
		// Each page gets its own write deadline: a large output to a slow
		// client may take longer than the server's WriteTimeout.
		rc.SetWriteDeadline(time.Now().Add(g.o.APITimeout + 10*time.Second))
		if _, err := w.Write(data); err != nil {
			return // the client went away
		}
		rc.Flush() // a page at a time: the client sees progress, and a cut as one
		offset += int64(len(data))
	}
}

// outputPage asks the results service for the page at offset. page is nil
// when the reply is an error or not a page.
func (g *Gateway) outputPage(ctx context.Context, id, stream string, offset int64) (*outputPage, *nats.Msg, error) {
	req, err := json.Marshal(map[string]any{"result_id": id, "stream": stream, "offset": offset})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, g.o.APITimeout)
	defer cancel()
	reply, err := g.o.Conn.RequestWithContext(ctx, outputSubject, req)
	if err != nil {
		return nil, nil, err
	}
	var page outputPage
	if reply.Header.Get(micro.ErrorCodeHeader) != "" || json.Unmarshal(reply.Data, &page) != nil {
		return nil, reply, nil
	}
	return &page, reply, nil
}
