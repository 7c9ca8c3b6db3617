package results

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// longOutput is script output long and repetitive enough that zstd encodes
// its words as matches and Huffman-coded literals: the text is nowhere in
// the stored bytes, so a filter must decompress to find it.
func longOutput(i int) string {
	var b strings.Builder
	for j := range 40 {
		fmt.Fprintf(&b, "%02d:%02d Checking service wuauserv on host PC%04d: running\r\n", j/60, j%60, i)
	}
	switch i % 4 {
	case 0:
		b.WriteString("ERROR: service wuauserv stopped unexpectedly (code 1067)\r\n")
	case 1:
		b.WriteString("Wärnung: Dienst gestoppt ✗\r\n")
	}
	return b.String()
}

// Long outputs: regex filters (with and without a required literal, case
// folded, anchored, multi-line) select exactly the rows a Go model does,
// list previews, sizes and snippets are those of the stored text, and the
// detail returns the outputs byte for byte. TestMain runs this with
// compressed and with plain outputs.
func TestLongOutputsFiltersAndDetail(t *testing.T) {
	e := start(t, Options{})
	var recs []rec
	for i := range 60 {
		r := rec{id: fmt.Sprintf("r%03d", i), pc: fmt.Sprintf("PC%04d", i), exit: code(int64(i % 2)),
			stdout: longOutput(i), started: t0.Add(time.Duration(i) * time.Second), finished: t0.Add(time.Duration(i)*time.Second + time.Millisecond)}
		if i%3 == 0 {
			r.stderr = "warning: " + longOutput(i+1)
		}
		recs = append(recs, r)
	}
	insert(t, e.n.DB, recs...)
	byID := map[string]rec{}
	for _, r := range recs {
		byID[r.id] = r
	}
	for _, f := range []struct{ field, re string }{
		{"stdout", "wuauserv stopped"},
		{"stdout", "(?i)error: SERVICE WUAUSERV"},
		{"stdout", "Dienst gestoppt ✗"},
		{"stdout", `(?m)^ERROR: .*\(code 10[0-9]{2}\)\r$`},
		{"stdout", "PC0042: running"},
		{"stdout", `host PC00[1-3]7`},
		{"stderr", "warning: 00:00 Checking"},
		{"stderr", "stopped"},
		{"stdout", "^00:00 Checking"},
		{"stdout", "nowhere at all"},
	} {
		re := regexp.MustCompile(f.re)
		var want []string
		for i := len(recs) - 1; i >= 0; i-- {
			out := recs[i].stdout
			if f.field == "stderr" {
				out = recs[i].stderr
			}
			if re.MatchString(out) {
				want = append(want, recs[i].id)
			}
		}
		rows := e.list(t, map[string]any{f.field: f.re, "limit": 1000})
		if got := ids(rows); !slices.Equal(got, want) {
			t.Errorf("%s ~ %q: %v, want %v", f.field, f.re, got, want)
		}
		for _, r := range rows {
			// Previews, sizes and the snippet around the match, as made
			// from the stored text.
			w := byID[r.ResultID]
			wantOut, _ := headChars(w.stdout, PreviewChars)
			wantErr, _ := headChars(w.stderr, PreviewChars)
			if r.Stdout != wantOut || r.Stderr != wantErr || r.StdoutBytes != int64(len(w.stdout)) || r.StderrBytes != int64(len(w.stderr)) ||
				r.StdoutTruncated != (len(w.stdout) > len(wantOut)) {
				t.Errorf("list row %s: previews or sizes differ from what was stored", r.ResultID)
			}
			field, match := w.stdout, r.StdoutMatch
			if f.field == "stderr" {
				field, match = w.stderr, r.StderrMatch
			}
			if want := snippet(re, field); fmt.Sprint(match) != fmt.Sprint(want) {
				t.Errorf("list row %s: snippet %+v, want %+v", r.ResultID, match, want)
			}
		}
	}
	for _, id := range []string{"r000", "r001", "r003", "r059"} {
		r, err := Detail(t.Context(), e.n.DB, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Stdout != byID[id].stdout || r.Stderr != byID[id].stderr {
			t.Errorf("detail %s: outputs differ from what was stored", id)
		}
	}
}
