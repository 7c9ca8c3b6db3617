-- Outputs may be stored zstd-compressed: stdout/stderr then hold a BLOB (one
-- zstd frame of the text) instead of TEXT, and these columns hold its first
-- 200 characters (what a list shows), plain, for lists. NULL beside a plain output (its own
-- preview). See store/outputs.go.
ALTER TABLE execution_results ADD COLUMN stdout_preview TEXT;
ALTER TABLE execution_results ADD COLUMN stderr_preview TEXT;

-- Resumable background jobs over the projection: where each one is, written
-- in the transaction of the batch it did, and when it finished.
CREATE TABLE store_jobs (
    name     TEXT PRIMARY KEY,
    cursor   TEXT NOT NULL DEFAULT '',
    done     INTEGER NOT NULL DEFAULT 0,
    rows     INTEGER NOT NULL DEFAULT 0,
    saved    INTEGER NOT NULL DEFAULT 0,
    done_at  TEXT
) WITHOUT ROWID;
