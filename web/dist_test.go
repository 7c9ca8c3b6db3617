package web

import (
	"bytes"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// TestDistMatchesSource fails when the committed dist/ is not exactly what
// src/ builds to: someone changed the source and forgot `go run ./web/build`,
// or edited dist/ by hand.
func TestDistMatchesSource(t *testing.T) {
	want, err := Build(os.DirFS("src"))
	if err != nil {
		t.Fatalf("build src: %v", err)
	}
	got := map[string][]byte{}
	err = fs.WalkDir(Dist(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Dist(), p)
		got[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var problems []string
	for name, b := range want {
		g, ok := got[name]
		switch {
		case !ok:
			problems = append(problems, "missing "+name)
		case !bytes.Equal(g, b):
			problems = append(problems, "differs "+name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			problems = append(problems, "extra "+name)
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		t.Fatalf("web/dist does not match web/src; run `go run ./web/build` and commit web/dist:\n%s",
			strings.Join(problems, "\n"))
	}
}

func TestBuildRewritesReferences(t *testing.T) {
	src := fstest.MapFS{
		"index.html": {Data: []byte(`<link rel="stylesheet" href="./s.css"><!-- modulepreload --><script type="module" src="./app.js"></script>`)},
		"app.js":     {Data: []byte("import { x } from './lib.js';\nexport * from \"./lib.js\";\n")},
		"lib.js":     {Data: []byte("export const x = 1;\n")},
		"s.css":      {Data: []byte("body{background:url(./i.svg)}")},
		"i.svg":      {Data: []byte("<svg/>")},
	}
	out, err := Build(src)
	if err != nil {
		t.Fatal(err)
	}
	lib := hashedName(t, out, "lib.")
	app := hashedName(t, out, "app.")
	css := hashedName(t, out, "s.")
	svg := hashedName(t, out, "i.")
	if s := string(out["assets/"+app]); !strings.Contains(s, "from './"+lib+"'") || !strings.Contains(s, `from "./`+lib+`"`) {
		t.Errorf("app imports not rewritten: %s", s)
	}
	if s := string(out["assets/"+css]); !strings.Contains(s, "url(./"+svg+")") {
		t.Errorf("css url not rewritten: %s", s)
	}
	html := string(out["index.html"])
	for _, want := range []string{`href="/assets/` + css + `"`, `src="/assets/` + app + `"`, `<link rel="modulepreload" href="/assets/` + lib + `">`} {
		if !strings.Contains(html, want) {
			t.Errorf("index.html lacks %s: %s", want, html)
		}
	}

	// A change in a dependency renames its importer too.
	src["lib.js"] = &fstest.MapFile{Data: []byte("export const x = 2;\n")}
	out2, err := Build(src)
	if err != nil {
		t.Fatal(err)
	}
	if hashedName(t, out2, "app.") == app {
		t.Error("app kept its name although the module it imports changed")
	}
	if hashedName(t, out2, "s.") != css {
		t.Error("css renamed although it did not change")
	}
}

func TestBuildRejectsBrokenReferences(t *testing.T) {
	for name, src := range map[string]fstest.MapFS{
		"missing import":  {"index.html": {Data: []byte(`<script src="./a.js"></script>`)}, "a.js": {Data: []byte(`import './nope.js';`)}},
		"missing in html": {"index.html": {Data: []byte(`<script src="./nope.js"></script>`)}},
		"cycle":           {"index.html": {Data: []byte(``)}, "a.js": {Data: []byte(`import './b.js';`)}, "b.js": {Data: []byte(`import './a.js';`)}},
		"no index":        {"a.js": {Data: []byte(``)}},
	} {
		if _, err := Build(src); err == nil {
			t.Errorf("%s: built without error", name)
		}
	}
}

func hashedName(t *testing.T, out map[string][]byte, prefix string) string {
	t.Helper()
	for n := range out {
		if strings.HasPrefix(n, "assets/"+prefix) {
			return strings.TrimPrefix(n, "assets/")
		}
	}
	t.Fatalf("no asset %s* in %v", prefix, slices.Sorted(maps.Keys(out)))
	return ""
}

// TestSourceKeepsToTheCSP catches what the gateway's Content-Security-Policy
// would block in the browser (inline scripts and styles, eval) and the DOM
// calls that would parse API data as HTML.
func TestSourceKeepsToTheCSP(t *testing.T) {
	forbidden := map[string][]*regexp.Regexp{
		".html": {
			regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), // a script with a body
			regexp.MustCompile(`<style`),
			regexp.MustCompile(`\sstyle=`),
			regexp.MustCompile(`\son[a-z]+=`),
		},
		".js": {
			regexp.MustCompile(`\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write`),
			regexp.MustCompile(`\beval\(|new Function\(`),
			regexp.MustCompile(`setAttribute\(\s*['"]style['"]`),
		},
	}
	entries, err := os.ReadDir("src")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		res := forbidden[path.Ext(e.Name())]
		if res == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("src", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if path.Ext(e.Name()) == ".html" {
			for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAll(b, -1) {
				if !bytes.Contains(tag, []byte(" src=")) {
					t.Errorf("%s: %s has no src: inline scripts break the CSP", e.Name(), tag)
				}
			}
		}
		for _, re := range res {
			if loc := re.FindIndex(b); loc != nil {
				t.Errorf("%s: %q breaks the CSP or parses data as HTML", e.Name(), b[loc[0]:min(loc[1]+20, len(b))])
			}
		}
	}
}
