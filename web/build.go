package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
)

// The dashboard needs no npm build: it is plain ES modules and one CSS file
// in src/. Build only gives every asset a content-hashed name, so the gateway
// can cache assets/ forever while index.html always points at the current
// files. `go run ./web/build` writes the result into dist/, and a test runs
// the same Build in memory to prove the committed dist/ matches src/.

var (
	// import x from './a.js', export … from './a.js', import './a.js', import('./a.js')
	jsImport = regexp.MustCompile(`(\bfrom\s*|\bimport\s*\(?\s*)(['"])(\./[^'"\s]+)(['"])`)
	// url(./icon.svg) in CSS
	cssURL = regexp.MustCompile(`url\((['"]?)(\./[^'")\s]+)(['"]?)\)`)
	// src="./app.js" or href="./style.css" in index.html
	htmlRef = regexp.MustCompile(`\b(src|href)="(\./[^"]+)"`)
)

// preloadMarker in index.html is replaced by a modulepreload link for every
// imported module, so the browser fetches the whole import graph at once instead of
// discovering it one level at a time.
const preloadMarker = "<!-- modulepreload -->"

// Build turns the dashboard source (a flat directory: index.html plus assets)
// into the files to serve: index.html, and each asset as
// assets/<name>.<hash>.<ext>, with every reference rewritten. A module's hash
// covers its rewritten imports, so changing a module renames every module
// that imports it, and a browser can never mix old and new code.
func Build(src fs.FS) (map[string][]byte, error) {
	entries, err := fs.ReadDir(src, ".")
	if err != nil {
		return nil, fmt.Errorf("read source: %w", err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() {
			return nil, fmt.Errorf("source must be flat, found directory %s", e.Name())
		}
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := fs.ReadFile(src, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", e.Name(), err)
		}
		files[e.Name()] = b
	}
	index, ok := files["index.html"]
	if !ok {
		return nil, fmt.Errorf("source has no index.html")
	}
	b := &builder{files: files, hashed: map[string]string{}, output: map[string][]byte{},
		imported: map[string]bool{}, visiting: map[string]bool{}}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range files {
			if n != "index.html" && !yield(n) {
				return
			}
		}
	})
	for _, n := range names {
		if _, err := b.asset(n); err != nil {
			return nil, err
		}
	}

	var preload strings.Builder
	for _, n := range names {
		if b.imported[n] {
			fmt.Fprintf(&preload, "<link rel=\"modulepreload\" href=\"/assets/%s\">\n", b.hashed[n])
		}
	}
	var refErr error
	html := htmlRef.ReplaceAllFunc(index, func(m []byte) []byte {
		sm := htmlRef.FindSubmatch(m)
		target, err := b.asset(strings.TrimPrefix(string(sm[2]), "./"))
		if err != nil && refErr == nil {
			refErr = fmt.Errorf("index.html: %w", err)
		}
		return []byte(fmt.Sprintf(`%s="/assets/%s"`, sm[1], target))
	})
	if refErr != nil {
		return nil, refErr
	}
	html = bytes.Replace(html, []byte(preloadMarker), []byte(strings.TrimSuffix(preload.String(), "\n")), 1)

	out := map[string][]byte{"index.html": html}
	for n, h := range b.hashed {
		out["assets/"+h] = b.output[n]
	}
	return out, nil
}

type builder struct {
	files    map[string][]byte
	hashed   map[string]string // source name -> hashed name
	output   map[string][]byte // source name -> rewritten content
	imported map[string]bool   // modules some other module imports: preloaded
	visiting map[string]bool   // import cycle detection
}

// asset rewrites one source file's references, hashes the result, and
// returns its hashed name. Dependencies are built first (depth first).
func (b *builder) asset(name string) (string, error) {
	if h, ok := b.hashed[name]; ok {
		return h, nil
	}
	content, ok := b.files[name]
	if !ok {
		return "", fmt.Errorf("reference to missing file %s", name)
	}
	if b.visiting[name] {
		return "", fmt.Errorf("import cycle through %s", name)
	}
	b.visiting[name] = true
	defer delete(b.visiting, name)

	var refErr error
	resolve := func(ref string) string {
		target, err := b.asset(strings.TrimPrefix(ref, "./"))
		if err != nil && refErr == nil {
			refErr = fmt.Errorf("%s: %w", name, err)
		}
		return "./" + target
	}
	switch path.Ext(name) {
	case ".js":
		content = jsImport.ReplaceAllFunc(content, func(m []byte) []byte {
			sm := jsImport.FindSubmatch(m)
			b.imported[strings.TrimPrefix(string(sm[3]), "./")] = true
			return []byte(string(sm[1]) + string(sm[2]) + resolve(string(sm[3])) + string(sm[4]))
		})
	case ".css":
		content = cssURL.ReplaceAllFunc(content, func(m []byte) []byte {
			sm := cssURL.FindSubmatch(m)
			return []byte("url(" + string(sm[1]) + resolve(string(sm[2])) + string(sm[3]) + ")")
		})
	}
	if refErr != nil {
		return "", refErr
	}
	sum := sha256.Sum256(content)
	ext := path.Ext(name)
	h := strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:5]) + ext
	b.hashed[name] = h
	b.output[name] = content
	return h, nil
}
