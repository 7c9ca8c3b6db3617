-- Retention deletes rows: drop an exec_id from result_exec_ids with its last
-- row, so the table stays the exact set of values present (and bounded).
CREATE TRIGGER result_exec_ids_delete AFTER DELETE ON execution_results
    WHEN OLD.exec_id IS NOT NULL
BEGIN
    DELETE FROM result_exec_ids WHERE exec_id = OLD.exec_id
        AND NOT EXISTS (SELECT 1 FROM execution_results WHERE exec_id = OLD.exec_id);
END;

DELETE FROM result_exec_ids WHERE NOT EXISTS
    (SELECT 1 FROM execution_results r WHERE r.exec_id = result_exec_ids.exec_id);
