-- Indexes the projector dropped to rebuild the projection from empty faster
-- (random inserts into five secondary B-trees cost more than building them
-- once over the finished table). A row here means a rebuild is in progress:
-- the index is missing and must be created again from the stored SQL (taken
-- from sqlite_master when it was dropped) before the projection is served.
-- The drop and these rows commit together, and so do the CREATE INDEX and
-- the row's deletion, so a crash anywhere leaves them consistent.
CREATE TABLE projector_rebuild (
    name TEXT PRIMARY KEY,
    sql  TEXT NOT NULL
) WITHOUT ROWID;
