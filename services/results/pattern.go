package results

import (
	"regexp/syntax"
	"strings"
)

// literalShape tells what part of a regex is a plain literal anchored at
// the start of the text: `^PC001$` is exactly "PC001" (an equality),
// `^PC00` and `^PC00[1-3]` start with "PC00" (an index range). Anything
// else (unanchored, case-folded, multi-line `^`) has no usable prefix.
func literalShape(pattern string) (prefix string, exact bool) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return "", false
	}
	var subs []*syntax.Regexp
	switch re.Op {
	case syntax.OpConcat:
		subs = re.Sub
	default:
		subs = []*syntax.Regexp{re}
	}
	if len(subs) == 0 || subs[0].Op != syntax.OpBeginText {
		return "", false
	}
	var b strings.Builder
	i := 1
	for ; i < len(subs) && subs[i].Op == syntax.OpLiteral && subs[i].Flags&syntax.FoldCase == 0; i++ {
		b.WriteString(string(subs[i].Rune))
	}
	prefix = b.String()
	// Without (?m), `$` is OpEndText: the end of the value, not of a line.
	exact = i == len(subs)-1 && subs[i].Op == syntax.OpEndText
	return prefix, exact
}

// prefixEnd is the smallest string greater than every string starting with
// prefix, in SQLite's BINARY (bytewise) order; "" means no upper bound.
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	for len(b) > 0 {
		if b[len(b)-1] < 0xff {
			b[len(b)-1]++
			return string(b)
		}
		b = b[:len(b)-1]
	}
	return ""
}

// likeContains is a LIKE pattern matching any text that contains lit.
func likeContains(lit string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(lit) + "%"
}
