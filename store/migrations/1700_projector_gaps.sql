-- Stretches of a stream the projector found missing: the stream's messages
-- from from_seq to to_seq were gone (expired, purged) before this
-- projection applied them, so it lacks whatever they held. Written in the
-- transaction that applies the first message after the hole. A node with
-- a gap not accepted (accepted_at NULL) keeps its read services out of
-- their queue groups; `kanade serve --accept-history-gap` accepts them.
CREATE TABLE projector_gaps (
    stream      TEXT NOT NULL,
    from_seq    INTEGER NOT NULL,
    to_seq      INTEGER NOT NULL,
    detected_at TEXT NOT NULL,
    accepted_at TEXT,
    PRIMARY KEY (stream, from_seq)
) WITHOUT ROWID;
