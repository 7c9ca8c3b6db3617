// Command build writes the dashboard's servable files: it reads web/src and
// replaces web/dist with index.html and content-hashed assets. Run it from
// the repository root after changing web/src: go run ./web/build
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/kanade-go/kanade/web"
)

func main() {
	if err := run("web/src", "web/dist"); err != nil {
		fmt.Fprintln(os.Stderr, "web/build:", err)
		os.Exit(1)
	}
}

func run(src, dist string) error {
	files, err := web.Build(os.DirFS(src))
	if err != nil {
		return err
	}
	// Start from an empty dist so renamed assets do not linger.
	if err := os.RemoveAll(dist); err != nil {
		return fmt.Errorf("clear %s: %w", dist, err)
	}
	for name, b := range files {
		p := filepath.Join(dist, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(p), err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	fmt.Printf("web/build: wrote %d files to %s\n", len(files), dist)
	return nil
}
