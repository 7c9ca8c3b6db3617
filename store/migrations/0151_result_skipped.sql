-- An agent sets skipped on a result it deliberately did not run (exit 122
-- unsupported, 124 version pin, 125 deadline passed, 126 revoked, 127
-- staleness): neither a success nor a failure. Rows projected before this
-- column read 0; a rebuild from the streams restores the flag.
ALTER TABLE execution_results ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;
