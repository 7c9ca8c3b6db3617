-- The audit trail's projection (stream AUDIT). id is the record's stream
-- sequence, so every node numbers a record alike and a page cursor is good
-- on any node; prev and hash are the chain (each record names the SHA-256
-- of the one before it).
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    addr        TEXT,
    payload     TEXT,
    error       TEXT,
    occurred_at TEXT NOT NULL,
    prev        TEXT NOT NULL DEFAULT '',
    hash        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX idx_audit_action_time ON audit_log (action, occurred_at);
CREATE INDEX idx_audit_actor_time ON audit_log (actor, occurred_at);
CREATE INDEX idx_audit_time ON audit_log (occurred_at);
