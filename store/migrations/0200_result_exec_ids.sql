-- Distinct exec_id values of execution_results, like result_pc_ids and
-- result_job_ids, so an exec_id regex (often a bare UUID, which is an
-- unanchored substring match) is tested on thousands of values and the rows
-- are then fetched by idx_results_exec, instead of testing every row.
-- Triggers keep it current whatever writes execution_results (0201 also
-- removes a value with its last row).
CREATE TABLE result_exec_ids (exec_id TEXT PRIMARY KEY) WITHOUT ROWID;

INSERT OR IGNORE INTO result_exec_ids (exec_id)
    SELECT DISTINCT exec_id FROM execution_results WHERE exec_id IS NOT NULL;

CREATE TRIGGER result_exec_ids_insert AFTER INSERT ON execution_results
    WHEN NEW.exec_id IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO result_exec_ids (exec_id) VALUES (NEW.exec_id);
END;

CREATE TRIGGER result_exec_ids_update AFTER UPDATE OF exec_id ON execution_results
    WHEN NEW.exec_id IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO result_exec_ids (exec_id) VALUES (NEW.exec_id);
END;
