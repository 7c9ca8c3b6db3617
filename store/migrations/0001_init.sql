-- The projection of the agent streams. Every table here can be rebuilt from
-- JetStream; timestamps are fixed-width UTC text (store.FormatTime) so that
-- text order is time order.

CREATE TABLE execution_results (
    result_id   TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL,
    exec_id     TEXT,
    pc_id       TEXT NOT NULL,
    exit_code   INTEGER,             -- NULL while in flight
    stdout      TEXT NOT NULL DEFAULT '',
    stderr      TEXT NOT NULL DEFAULT '',
    started_at  TEXT,
    finished_at TEXT,                -- NULL while in flight
    recorded_at TEXT NOT NULL,       -- JetStream publish time of the first message seen
    job_id      TEXT,                -- the manifest id
    version     TEXT,                -- manifest version, from EventStarted
    reaped      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_results_started ON execution_results (started_at DESC, result_id DESC);
CREATE INDEX idx_results_pc ON execution_results (pc_id, started_at DESC, result_id DESC);
CREATE INDEX idx_results_job ON execution_results (job_id, started_at DESC, result_id DESC);
CREATE INDEX idx_results_exec ON execution_results (exec_id);
CREATE INDEX idx_results_running ON execution_results (started_at DESC, result_id DESC) WHERE finished_at IS NULL;

-- Distinct values of the high-cardinality filter columns, kept current by the
-- projector, so a regex is matched against thousands of values rather than
-- millions of rows.
CREATE TABLE result_pc_ids (pc_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE result_job_ids (job_id TEXT PRIMARY KEY) WITHOUT ROWID;

CREATE TABLE executions (
    exec_id       TEXT PRIMARY KEY,
    job_id        TEXT NOT NULL,
    version       TEXT,
    initiated_by  TEXT,
    initiated_at  TEXT NOT NULL,
    target_count  INTEGER NOT NULL DEFAULT 0,
    success_count INTEGER NOT NULL DEFAULT 0,
    failure_count INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL DEFAULT 'pending', -- pending|running|completed|expired
    request_id    TEXT,
    target        TEXT,              -- the target as JSON
    timeout_secs  INTEGER,
    deadline_at   TEXT
);
CREATE INDEX idx_executions_initiated ON executions (initiated_at DESC, exec_id DESC);
CREATE INDEX idx_executions_job ON executions (job_id, status);

CREATE TABLE agents (
    pc_id                   TEXT PRIMARY KEY,
    hostname                TEXT,
    os_family               TEXT,
    agent_version           TEXT,
    last_heartbeat          TEXT NOT NULL,
    agent_cpu_pct           REAL,
    agent_rss_bytes         INTEGER,
    last_logon_user         TEXT,
    last_logon_display_name TEXT
);

-- The projector's position in each stream, written in the same transaction
-- as the rows it applied: what is at or below it was applied exactly once.
CREATE TABLE projector_offsets (
    stream   TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID;

-- Messages the projector could not apply, kept so nothing vanishes silently.
CREATE TABLE rejects (
    stream      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    subject     TEXT NOT NULL,
    error       TEXT NOT NULL,
    payload     BLOB NOT NULL,       -- a bounded prefix
    size        INTEGER NOT NULL,    -- the whole payload's size
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (stream, seq)
);
