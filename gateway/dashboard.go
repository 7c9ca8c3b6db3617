package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// Cache lifetimes: files under assets/ carry a content hash in their name,
// so they never change; index.html names the current hashes and so must
// be revalidated every time (its ETag makes that a 304).
const (
	cacheImmutable = "public, max-age=31536000, immutable"
	cacheNone      = "no-cache"
)

// dashboard serves the built single-page app.
type dashboard struct {
	fsys  fs.FS
	etags map[string]string // regular files only, by slash path
}

func newDashboard(fsys fs.FS) (*dashboard, error) {
	d := &dashboard{fsys: fsys, etags: map[string]string{}}
	err := fs.WalkDir(fsys, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		d.etags[p] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dashboard files: %w", err)
	}
	return d, nil
}

func (d *dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		textError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	switch {
	case name == "assets" || strings.HasPrefix(name, "assets/"):
		// A missing asset is a 404: answering index.html would hand the
		// browser HTML where it expects a script or a stylesheet.
		if _, ok := d.etags[name]; !ok {
			textError(w, http.StatusNotFound, "not found")
			return
		}
		d.serve(w, r, name, cacheImmutable)
	case name != "" && name != "index.html" && d.etags[name] != "":
		d.serve(w, r, name, cacheNone) // favicon.ico and the like: not hashed
	default:
		// "/" and every client-side route.
		if _, ok := d.etags["index.html"]; !ok {
			textError(w, http.StatusNotFound, "dashboard not built")
			return
		}
		d.serve(w, r, "index.html", cacheNone)
	}
}

func (d *dashboard) serve(w http.ResponseWriter, r *http.Request, name, cache string) {
	f, err := d.fsys.Open(name)
	if err != nil {
		textError(w, http.StatusNotFound, "not found")
		return
	}
	defer f.Close()
	rs, ok := f.(io.ReadSeeker)
	if !ok {
		b, err := io.ReadAll(f)
		if err != nil {
			textError(w, http.StatusInternalServerError, "read "+name)
			return
		}
		rs = bytes.NewReader(b)
	}
	h := w.Header()
	h.Set("Cache-Control", cache)
	h.Set("ETag", d.etags[name])
	http.ServeContent(w, r, name, time.Time{}, rs)
}
