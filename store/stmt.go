package store

import (
	"context"
	"database/sql"
	"fmt"
)

// ReadStmt returns a prepared statement for query on the read pool, prepared
// once and kept for the life of the DB. Hot point lookups (a result's
// detail, a tail) otherwise spend about half their CPU re-preparing the same
// SQL on every call. database/sql prepares it again on each pooled
// connection as needed; the *sql.Stmt is safe for concurrent use.
func (db *DB) ReadStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if s, ok := db.stmts.Load(query); ok {
		return s.(*sql.Stmt), nil
	}
	s, err := db.R.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if prev, loaded := db.stmts.LoadOrStore(query, s); loaded {
		s.Close()
		return prev.(*sql.Stmt), nil
	}
	return s, nil
}

func (db *DB) closeStmts() {
	db.stmts.Range(func(k, v any) bool {
		v.(*sql.Stmt).Close()
		db.stmts.Delete(k)
		return true
	})
}
