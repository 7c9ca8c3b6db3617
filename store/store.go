// Package store opens kanade's SQLite projection: one writer connection, a
// read-only pool, embedded versioned migrations, the fixed-width time
// encoding every table uses, and the REGEXP function queries filter with.
//
// SQLite is a projection of the JetStream streams, never the source of
// truth: deleting the file and restarting rebuilds it.
package store

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is the projection database: W is the single writer connection (all
// writes go through it, in IMMEDIATE transactions), R a read-only pool.
type DB struct {
	W     *sql.DB
	R     *sql.DB
	Path  string
	stmts sync.Map // query -> *sql.Stmt on R, see ReadStmt
}

// Options tune Open. Zero values are sane defaults.
type Options struct {
	// ReadConns caps the read pool (default 8).
	ReadConns int
}

// Open opens (creating if needed) the database at path, applies pending
// migrations and returns the writer and the read pool.
func Open(ctx context.Context, path string, o Options) (*DB, error) {
	if o.ReadConns <= 0 {
		o.ReadConns = 8
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	w, err := sql.Open("sqlite", dsn(abs, false))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("migrate store %s: %w", abs, err)
	}
	r, err := sql.Open("sqlite", dsn(abs, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store read pool %s: %w", abs, err)
	}
	r.SetMaxOpenConns(o.ReadConns)
	r.SetMaxIdleConns(o.ReadConns)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("open store read pool %s: %w", abs, err)
	}
	return &DB{W: w, R: r, Path: abs}, nil
}

// dsn builds a file: URI so that the query parameters are honoured (a plain
// file name ignores them). Pragmas in the DSN apply to every pooled
// connection, unlike an Exec'd PRAGMA.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Add("_pragma", "cache_size(-32000)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
		q.Set("mode", "ro")
	} else {
		// The single writer checkpoints less often (each checkpoint
		// writes hot pages again; 10000 pages is about 40 MiB of WAL) and
		// truncates the WAL back to 64 MiB after a checkpoint so it cannot
		// stay large. A larger page cache (128 MiB) was measured: no faster
		// rebuild, three times the memory.
		q.Add("_pragma", "wal_autocheckpoint(10000)")
		q.Add("_pragma", "journal_size_limit(67108864)")
		q.Set("_txlock", "immediate")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// Close closes both handles.
func (db *DB) Close() error {
	db.closeStmts()
	return errors.Join(db.R.Close(), db.W.Close())
}

// WriteTx runs fn in one IMMEDIATE transaction on the writer and commits,
// or rolls back if fn fails.
func (db *DB) WriteTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func migrate(ctx context.Context, w *sql.DB) error {
	if _, err := w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`); err != nil {
		return err
	}
	applied := map[int]bool{}
	rows, err := w.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		applied[v] = true
	}
	rows.Close()

	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".sql")
		num, _, _ := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			return fmt.Errorf("migration %s: name must start with a number", f)
		}
		if applied[v] {
			continue
		}
		body, err := migrations.ReadFile(f)
		if err != nil {
			return err
		}
		tx, err := w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			v, name, FormatTime(time.Now())); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
	}
	return nil
}

// TimeLayout is the stored form of every timestamp: UTC, nanoseconds always
// written, so that text order is time order ("…:05Z" and "…:05.1Z" would
// not sort right as plain RFC 3339).
const TimeLayout = "2006-01-02T15:04:05.000000000Z"

// FormatTime encodes t for storage.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// ParseTime decodes a stored time; it also accepts any RFC 3339 text.
func ParseTime(s string) (time.Time, error) {
	return time.Parse(time.RFC3339Nano, s)
}

// NullTime encodes t for storage, NULL for the zero time.
func NullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return FormatTime(t)
}

// APITime turns a stored timestamp into the API's RFC 3339 form (trailing
// zero fractions dropped). NULL stays nil.
func APITime(s sql.NullString) *string {
	if !s.Valid {
		return nil
	}
	t, err := ParseTime(s.String)
	if err != nil {
		return &s.String
	}
	out := t.UTC().Format(time.RFC3339Nano)
	return &out
}

// regexCache holds compiled patterns: SQLite calls REGEXP once per row, and
// compiling per row is more than ten times slower. Patterns come from user
// filters, so the set is small but unbounded: past maxCachedPatterns the
// cache starts over.
var regexCache = struct {
	sync.RWMutex
	m map[string]*compiledRegexp
}{m: map[string]*compiledRegexp{}}

// compiledRegexp is a pattern with the literal every match contains (see
// RequiredLiteral), tested first on a decompressed output.
type compiledRegexp struct {
	re   *regexp.Regexp
	lit  []byte
	fold bool
}

const maxCachedPatterns = 1024

// CompileRegexp compiles pattern through the cache used by REGEXP.
func CompileRegexp(pattern string) (*regexp.Regexp, error) {
	c, err := compileCached(pattern)
	if err != nil {
		return nil, err
	}
	return c.re, nil
}

func compileCached(pattern string) (*compiledRegexp, error) {
	regexCache.RLock()
	c, ok := regexCache.m[pattern]
	regexCache.RUnlock()
	if ok {
		return c, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	lit, fold := RequiredLiteral(pattern)
	c = &compiledRegexp{re: re, lit: []byte(lit), fold: fold}
	if fold {
		c.lit = bytes.ToLower(c.lit)
	}
	regexCache.Lock()
	if len(regexCache.m) >= maxCachedPatterns {
		regexCache.m = map[string]*compiledRegexp{}
	}
	regexCache.m[pattern] = c
	regexCache.Unlock()
	return c, nil
}

// match tests a value: the required literal first (cheap), then the regex.
func (c *compiledRegexp) match(b []byte) bool {
	switch {
	case len(c.lit) == 0:
	case c.fold:
		if !containsFoldASCII(b, c.lit) {
			return false
		}
	default:
		if !bytes.Contains(b, c.lit) {
			return false
		}
	}
	return c.re.Match(b)
}

func init() {
	registerOutputFunctions()
	// The one init side effect the project allows: SQL functions. SQLite's `x REGEXP p`
	// calls regexp(p, x). NULL values match as the empty string; a
	// compressed output matches as its text.
	sqlite.MustRegisterDeterministicScalarFunction("regexp", 2, func(ctx *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		p, ok := args[0].(string)
		if !ok {
			return nil, fmt.Errorf("regexp: pattern must be text")
		}
		c, err := compileCached(p)
		if err != nil {
			return nil, fmt.Errorf("invalid regex `%s`: %w", p, err)
		}
		re := c.re
		switch v := args[1].(type) {
		case nil:
			return re.MatchString(""), nil
		case string:
			return re.MatchString(v), nil
		case []byte:
			// A compressed output (see outputs.go) is matched as its text.
			var ok bool
			err := withOutput(v, func(b []byte) { ok = c.match(b) })
			return ok, err
		default:
			return re.MatchString(fmt.Sprint(v)), nil
		}
	})
}
