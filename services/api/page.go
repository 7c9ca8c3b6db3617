package api

import (
	"bytes"
	"encoding/json"
)

// Paging: an endpoint declared Paged answers one page of a JSON array per
// request, as executions' detail answers its runs with `after` and `next`.
// The array stays the body (upstream's shape), so the cursor of the next
// page travels in a reply header; the caller sends it back as ParamAfter.
// No HeaderNext means the page is the last. Cursors are opaque and keyed
// on the list's order, not offsets, so rows written between two pages do
// not shift the pages after them.
const (
	HeaderNext = "Kanade-Next"
	ParamAfter = "after"
)

// pageHeaderRoom is what a page's reply keeps free for its headers (the
// cursor is counted on top, since the caller chose its length).
const pageHeaderRoom = 2 << 10

// defaultMaxPayload is nats-server's default, for a hand-made Request.
const defaultMaxPayload = 1 << 20

// PageBudget is how many bytes a page's body and cursor may take: the
// connection's max_payload less room for the reply's other headers.
func (r Request) PageBudget() int {
	max := r.maxPayload
	if max <= 0 {
		max = defaultMaxPayload
	}
	return int(max) - pageHeaderRoom
}

// FitPage encodes items, in order, as a JSON array whose bytes and next
// cursor fit budget, and answers it as a Reply with hdr and HeaderNext.
// It stops before the first item that would not fit; when it stopped
// there, or more says items past the last exist, HeaderNext is
// cursor(last item sent). An item too large to fit even alone answers
// the too-large error naming the limit: the caller must narrow the list.
func FitPage[T any](items []T, more bool, budget int, cursor func(T) string, hdr map[string]string) (Reply, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	next := ""
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for i, it := range items {
		mark := b.Len()
		if i > 0 {
			b.WriteByte(',')
		}
		if err := enc.Encode(it); err != nil {
			return Reply{}, err
		}
		b.Truncate(b.Len() - 1) // the encoder's newline
		c := cursor(it)
		if b.Len()+1+len(c) > budget {
			if i == 0 {
				return Reply{}, tooLarge(b.Len()+1, int64(budget))
			}
			b.Truncate(mark)
			more = true
			break
		}
		next = c
		if i == len(items)-1 {
			break
		}
	}
	b.WriteByte(']')
	h := make(map[string]string, len(hdr)+1)
	for k, v := range hdr {
		h[k] = v
	}
	if more && next != "" {
		h[HeaderNext] = next
	}
	return Reply{Header: h, Body: b.Bytes()}, nil
}
