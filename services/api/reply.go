package api

import "strconv"

// HeaderStatus is the reply header through which a handler answers with a
// success status other than 200 (or 204 for an empty body), and with a
// body: a health probe's 503 that still carries its JSON, say. The gateway
// answers with it; a NATS caller reads it beside the body.
const HeaderStatus = "Kanade-Status"

// Reply is a handler's answer with reply headers: the gateway copies them
// onto the HTTP response (X-Total-Count, a Content-Type other than JSON).
// Body is encoded as a plain handler value would be: []byte or
// json.RawMessage as is, a string as its bytes, anything else as JSON.
type Reply struct {
	Status int // HeaderStatus; 0 = the usual 200/204
	Header map[string]string
	Body   any
}

// Text is a text/plain reply.
func Text(s string) Reply {
	return Reply{Header: map[string]string{"Content-Type": "text/plain; charset=utf-8"}, Body: []byte(s)}
}

// headers returns r's headers for the NATS reply, HeaderStatus included.
func (r Reply) headers() map[string][]string {
	h := make(map[string][]string, len(r.Header)+1)
	for k, v := range r.Header {
		h[k] = []string{v}
	}
	if r.Status != 0 {
		h[HeaderStatus] = []string{strconv.Itoa(r.Status)}
	}
	return h
}
