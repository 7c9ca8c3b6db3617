package results

import (
	"errors"
	"strings"
	"testing"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
)

// Decoding and validating a list request never panics, and every refusal
// is a 400 with a message: user input is never a 500.
func FuzzDecodeListRequest(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `[1]`, `"x"`, `{"limit":20,"status":"failure"}`, `{"limit":-1}`, `{"limit":1e9}`,
		`{"pc_id":"^PC001$","job_id":"^foo","exec_id":"","stdout":"(?m)^err","stderr":"x{2,1}"}`,
		`{"pc_id":"("}`, `{"since":"2026-05-16T00:00:00Z"}`, `{"since":"2026-13-40T99:00:00Z"}`,
		`{"before":"2026-05-16T00:00:00.5Z,abc"}`, `{"before":",abc"}`, `{"before":","}`, `{"before":"x,y,z"}`,
		`{"unknown":1}`, `{"limit":"5"}`, `{} {}`, `{"pc_id":"\u0000"}`, `{"pc_id":"^\xff"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodeList(data)
		if err != nil {
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Status != 400 || ae.Message == "" {
				t.Fatalf("%q: %v is not a 400", data, err)
			}
			return
		}
		q, err := p.compile()
		if err != nil {
			t.Fatalf("%q: accepted, then refused: %v", data, err)
		}
		if q.limit < 1 || q.limit > MaxLimit {
			t.Fatalf("%q: limit %d accepted", data, q.limit)
		}
		for _, v := range q.values {
			if v.exact && !v.re.MatchString(v.prefix) {
				t.Fatalf("%q: %s taken as equality with %q, which it does not match", data, v.pattern, v.prefix)
			}
		}
	})
}

// The literal shape of a pattern is what lets an index answer it, so it
// must never claim more than the regex means.
func FuzzLiteralShape(f *testing.F) {
	for _, s := range []string{`^PC001$`, `^PC00`, `PC001`, `(?i)^pc`, `(?m)^a$`, `^a|^b`, `^$`, `^a\$`, `^a.b$`, `^\x{10FFFF}z`,
		`(?i)error code=4[0-9]7`, `.*(?i:disk)x`, `(?i)kelvin`, `a(?i)bc_%d`} {
		f.Add(s, "PC001")
	}
	f.Add(`(?i)error`, "eRRor")
	f.Add(`(?i)sk`, "\u017f\u212a")
	f.Fuzz(func(t *testing.T, pattern, value string) {
		prefix, exact := literalShape(pattern)
		r, err := compileRegex(pattern)
		if err != nil {
			return
		}
		m := r.MatchString(value)
		if exact && m != (value == prefix) {
			t.Fatalf("%q exact %q: value %q matches=%v", pattern, prefix, value, m)
		}
		if m && len(value) < len(prefix) || m && value[:len(prefix)] != prefix {
			t.Fatalf("%q prefix %q: matches %q", pattern, prefix, value)
		}
		if lit, fold := store.RequiredLiteral(pattern); m && fold && !strings.Contains(asciiLower(value), asciiLower(lit)) {
			t.Fatalf("%q matches %q without %q in any ASCII case (the LIKE prefilter would drop it)", pattern, value, lit)
		} else if m && !fold && !strings.Contains(value, lit) {
			t.Fatalf("%q matches %q without %q (the instr prefilter would drop it)", pattern, value, lit)
		}
		if end := prefixEnd(prefix); m && end != "" && value >= end {
			t.Fatalf("%q: %q is past the range end %q", pattern, value, end)
		}
	})
}

// asciiLower lowers ASCII letters only, as SQLite's LIKE compares.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
