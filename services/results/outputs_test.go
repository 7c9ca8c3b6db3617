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
// and list and detail return the outputs byte for byte. TestMain runs this
// with compressed and with plain outputs.
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
			if r.Stdout != byID[r.ResultID].stdout || r.Stderr != byID[r.ResultID].stderr {
				t.Errorf("list row %s: outputs differ from what was stored", r.ResultID)
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
