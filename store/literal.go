package store

import (
	"regexp/syntax"
	"unicode"
	"unicode/utf8"
)

// RequiredLiteral returns text every match of pattern contains: the
// longest literal of its top-level concatenation; fold when it is
// case-insensitive, only returned then when every letter folds within
// ASCII. REGEXP tests it on a decompressed output before running the
// regex. (services/results has the same rule for SQLite's instr/LIKE
// pre-test of plain outputs.)
func RequiredLiteral(pattern string) (lit string, fold bool) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return "", false
	}
	re = re.Simplify()
	subs := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		subs = re.Sub
	}
	for _, s := range subs {
		if s.Op != syntax.OpLiteral {
			continue
		}
		l, f := string(s.Rune), s.Flags&syntax.FoldCase != 0
		if f && !foldsInASCII(l) {
			continue
		}
		if len(l) > len(lit) || len(l) == len(lit) && fold && !f {
			lit, fold = l, f
		}
	}
	return lit, fold
}

// foldsInASCII reports whether every rune of s is ASCII and case-folds only
// to ASCII ('k' also folds to the Kelvin sign, 's' to the long s).
func foldsInASCII(s string) bool {
	for _, r := range s {
		if r >= utf8.RuneSelf {
			return false
		}
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f >= utf8.RuneSelf {
				return false
			}
		}
	}
	return true
}

// containsFoldASCII reports whether b contains lower (lower-case ASCII)
// with ASCII letters compared case-insensitively.
func containsFoldASCII(b, lower []byte) bool {
	n := len(lower)
	if n == 0 {
		return true
	}
	first, upper := lower[0], lower[0]
	if 'a' <= first && first <= 'z' {
		upper = first - 'a' + 'A'
	}
	for i := 0; i+n <= len(b); i++ {
		if c := b[i]; c != first && c != upper {
			continue
		}
		j := 1
		for ; j < n; j++ {
			c := b[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lower[j] {
				break
			}
		}
		if j == n {
			return true
		}
	}
	return false
}
