-- Skipped results of an execution: counted toward completion (success +
-- failure + skipped reaching target_count) but neither as a success nor a
-- failure, so an offline agent replaying a Command past its deadline does
-- not inflate failure_count.
ALTER TABLE executions ADD COLUMN skipped_count INTEGER NOT NULL DEFAULT 0;
