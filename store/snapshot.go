package store

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// SnapshotInto writes a consistent copy of the database to dst (which must
// not exist) with VACUUM INTO: one read transaction, so every table in it,
// projector_offsets included, is as of the same commit; writers go on
// meanwhile. It runs on a connection of its own: the read pool is
// query_only, which VACUUM INTO refuses.
func (db *DB) SnapshotInto(ctx context.Context, dst string) error {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	c, err := sql.Open("sqlite", "file:"+(&url.URL{Path: db.Path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer c.Close()
	c.SetMaxOpenConns(1)
	if _, err := c.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		os.Remove(dst)
		return fmt.Errorf("snapshot: vacuum into: %w", err)
	}
	return nil
}

// SchemaVersion is the newest migration this binary knows: a snapshot made
// by a newer one may hold a schema it cannot read.
func SchemaVersion() int {
	v, _ := latestMigration()
	return v
}

func latestMigration() (int, error) {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return 0, err
	}
	latest := 0
	for _, f := range files {
		num, _, _ := strings.Cut(filepath.Base(f), "_")
		if v, err := strconv.Atoi(num); err == nil && v > latest {
			latest = v
		}
	}
	return latest, nil
}
