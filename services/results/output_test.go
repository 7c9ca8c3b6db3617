package results

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// List rows carry upstream's previews: the first 200 characters (never a
// split one), *_truncated, the sizes, and a snippet around the first
// match of an output regex, which itself ran on the whole text.
func TestListPreviewsAndSnippets(t *testing.T) {
	e := start(t, Options{})
	long := strings.Repeat("é", 150) + strings.Repeat("x", 300) + " ERROR code=42 " + strings.Repeat("y", 500)
	insert(t, e.n.DB,
		rec{id: "r-long", pc: "PC1", exit: code(1), stdout: long, stderr: "short", started: t0, finished: t0},
		rec{id: "r-short", pc: "PC2", exit: code(0), stdout: "ok\n", started: t0.Add(-time.Second), finished: t0},
	)
	rows := e.list(t, nil)
	if len(rows) != 2 || rows[0].ResultID != "r-long" {
		t.Fatalf("rows: %v", ids(rows))
	}
	r := rows[0]
	if utf8.RuneCountInString(r.Stdout) != PreviewChars || !strings.HasPrefix(long, r.Stdout) || !r.StdoutTruncated ||
		r.StdoutBytes != int64(len(long)) || r.Stderr != "short" || r.StderrTruncated || r.StderrBytes != 5 {
		t.Fatalf("long row: %q %v %d / %q %v %d", r.Stdout, r.StdoutTruncated, r.StdoutBytes, r.Stderr, r.StderrTruncated, r.StderrBytes)
	}
	if r.StdoutMatch != nil || r.StderrMatch != nil {
		t.Fatalf("snippet without a regex: %+v", r)
	}
	if s := rows[1]; s.Stdout != "ok\n" || s.StdoutTruncated {
		t.Fatalf("short row: %+v", s)
	}
	// The match lies past the preview: found in the full text.
	rows = e.list(t, map[string]any{"stdout": `ERROR code=\d+`})
	if len(rows) != 1 {
		t.Fatalf("regex rows: %v", ids(rows))
	}
	m := rows[0].StdoutMatch
	want := Snippet{Before: strings.Repeat("x", 79) + " ", Matched: "ERROR code=42", After: " " + strings.Repeat("y", 79), ClippedStart: true, ClippedEnd: true}
	if m == nil || *m != want || rows[0].StderrMatch != nil || utf8.RuneCountInString(rows[0].Stdout) != PreviewChars {
		t.Fatalf("snippet: %+v, want %+v", m, want)
	}
	// Near the start and the end: nothing clipped; a long match is cut at
	// 240 characters and says so.
	rows = e.list(t, map[string]any{"stdout": `^ok`})
	if m := rows[0].StdoutMatch; m == nil || *m != (Snippet{Matched: "ok", After: "\n"}) {
		t.Fatalf("short snippet: %+v", m)
	}
	rows = e.list(t, map[string]any{"stdout": `x+`})
	if m := rows[0].StdoutMatch; m == nil || m.Matched != strings.Repeat("x", SnippetMatch) || !m.ClippedEnd ||
		m.Before != strings.Repeat("é", SnippetBefore) || !m.ClippedStart {
		t.Fatalf("long match: %+v", m)
	}
	// The JSON keys are upstream's; a snippet is omitted when absent.
	_, body := e.call(t, "kanade.results.list", `{"limit":1}`)
	for _, k := range []string{`"stdout_truncated":true`, `"stderr_truncated":false`, `"stdout_bytes":`} {
		if !bytes.Contains(body, []byte(k)) {
			t.Errorf("list JSON lacks %s: %s", k, body)
		}
	}
	if bytes.Contains(body, []byte("_match")) {
		t.Errorf("list JSON has a snippet without a regex: %s", body)
	}
}

// A page of 1000 rows answers 200 whatever the outputs: with 1 KiB
// outputs the previews are sent as they are; with outputs JSON escapes
// six-fold (control characters) they are cut shorter to fit the reply.
func TestListLimit1000Fits(t *testing.T) {
	e := start(t, Options{})
	kib := strings.Repeat("0123456789abcdef", 64)
	ctl := strings.Repeat("\x01\x02", 512)
	var recs []rec
	for i := range 1000 {
		recs = append(recs, rec{id: fmt.Sprintf("r%04d", i), pc: "PC1", exit: code(0), stdout: kib, stderr: kib,
			started: t0.Add(time.Duration(i) * time.Second), finished: t0})
	}
	insert(t, e.n.DB, recs...)
	rows := e.list(t, map[string]any{"limit": 1000})
	if len(rows) != 1000 || rows[0].Stdout != kib[:PreviewChars] || !rows[0].StdoutTruncated || rows[999].StderrBytes != 1024 {
		t.Fatalf("1 KiB page: %d rows, first %+v", len(rows), rows[0])
	}
	for i := range recs {
		recs[i].id, recs[i].stdout, recs[i].stderr = fmt.Sprintf("c%04d", i), ctl, ctl
		recs[i].started = recs[i].started.Add(time.Hour)
	}
	insert(t, e.n.DB, recs...)
	code, body := e.call(t, "kanade.results.list", `{"limit":1000}`)
	var got []Row
	if code != "" || json.Unmarshal(body, &got) != nil || len(got) != 1000 || len(body) > int(e.nc.MaxPayload()) {
		t.Fatalf("control-character page: %s, %d bytes", code, len(body))
	}
	if r := got[0]; !r.StdoutTruncated || len(r.Stdout) >= PreviewChars || !strings.HasPrefix(ctl, r.Stdout) {
		t.Fatalf("cut preview: %q %v", r.Stdout, r.StdoutTruncated)
	}
}

// An 8 MiB output: the detail has its head, its tail and the sizes, the
// tail endpoint stays bounded, and the output pages join byte for byte
// (pages cut characters; they are bytes, not text).
func TestDetailHeadTailAndOutputPages(t *testing.T) {
	e := start(t, Options{})
	var b strings.Builder
	for i := 0; b.Len() < 8<<20-100; i++ {
		fmt.Fprintf(&b, "line %07d: kanade ö 日本語\n", i)
	}
	big := b.String() + strings.Repeat("x", 8<<20-b.Len())
	insert(t, e.n.DB, rec{id: "big", pc: "PC1", exit: code(0), stdout: big, stderr: "warn", started: t0, finished: t0})

	c, body := e.call(t, "kanade.results.detail", `{"result_id":"big"}`)
	var d Row
	if c != "" || json.Unmarshal(body, &d) != nil {
		t.Fatalf("detail: %s %.200s", c, body)
	}
	if !d.StdoutTruncated || d.StdoutBytes != 8<<20 || !strings.HasPrefix(big, d.Stdout) || !strings.HasSuffix(big, d.StdoutTail) ||
		len(d.Stdout) < DetailPart-4 || len(d.StdoutTail) < DetailPart-4 || !utf8.ValidString(d.Stdout) || !utf8.ValidString(d.StdoutTail) {
		t.Fatalf("detail head %d bytes, tail %d bytes, truncated %v, size %d", len(d.Stdout), len(d.StdoutTail), d.StdoutTruncated, d.StdoutBytes)
	}
	if d.Stderr != "warn" || d.StderrTruncated || d.StderrTail != "" || d.StderrBytes != 4 {
		t.Fatalf("detail stderr: %+v", d)
	}
	c, body = e.call(t, "kanade.results.tail", `{"result_id":"big"}`)
	var tr TailReply
	if c != "" || json.Unmarshal(body, &tr) != nil || !tr.StdoutTruncated || !strings.HasSuffix(big, tr.Stdout) || len(tr.Stdout) > DetailPart {
		t.Fatalf("tail: %s %d bytes", c, len(body))
	}

	var got []byte
	for off := 0; ; {
		c, body := e.call(t, "kanade.results.output", fmt.Sprintf(`{"result_id":"big","stream":"stdout","offset":%d}`, off))
		var p OutputPage
		if c != "" || json.Unmarshal(body, &p) != nil || p.Total != 8<<20 || p.Offset != int64(off) {
			t.Fatalf("page at %d: %s %.200s", off, c, body)
		}
		if len(p.Data) == 0 {
			break
		}
		got = append(got, p.Data...)
		off += len(p.Data)
	}
	if !bytes.Equal(got, []byte(big)) {
		t.Fatalf("pages joined: %d bytes, want %d, equal %v", len(got), len(big), bytes.Equal(got, []byte(big)))
	}
	for body, want := range map[string]string{
		`{"result_id":"big","stream":"both"}`:                   "400 parameter stream",
		`{"result_id":"big","stream":"stdout","limit":9999999}`: "400 parameter limit",
		`{"result_id":"big","stream":"stdout","offset":-1}`:     "400 parameter offset",
		`{"result_id":"nope","stream":"stdout"}`:                "404 result nope not found",
	} {
		if c, b := e.call(t, "kanade.results.output", body); c+" "+string(b[:min(len(b), len(want)-4)]) != want {
			t.Errorf("%s: %s %s", body, c, b)
		}
	}
	if _, err := Output(context.Background(), e.n.DB, OutputParams{ResultID: "big", Stream: "stderr", Limit: 2}, 0); err != nil {
		t.Fatal(err)
	}
}

// A detail that cannot fit whole (output JSON escapes six-fold, a server
// with a small max_payload) is cut to head and tail that do.
func TestFitDetailShrinksToBudget(t *testing.T) {
	out := strings.Repeat("\x1b[31mred\x1b[0m ", 20000) // ANSI colours: \u001b
	r := Row{ResultID: "x", Stdout: out, StdoutBytes: int64(len(out))}
	const budget = 200 << 10
	b, err := fitDetail(r, budget)
	var d Row
	if err != nil || len(b) > budget || json.Unmarshal(b, &d) != nil {
		t.Fatalf("fit: %v, %d bytes", err, len(b))
	}
	if !d.StdoutTruncated || !strings.HasPrefix(out, d.Stdout) || !strings.HasSuffix(out, d.StdoutTail) || d.StdoutBytes != int64(len(out)) {
		t.Fatalf("cut detail: %d + %d bytes, truncated %v", len(d.Stdout), len(d.StdoutTail), d.StdoutTruncated)
	}
}
