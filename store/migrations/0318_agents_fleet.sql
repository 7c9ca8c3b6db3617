-- What upstream's agents list shows beyond the first columns: when the row
-- was last written (the list's default sort), disk counters, the versions
-- an agent quarantined, and its signing state. command_keys is a JSON array
-- or NULL when the agent never reported one ([] is kept); enforcing is
-- NULL when never reported.
ALTER TABLE agents ADD COLUMN updated_at TEXT;
ALTER TABLE agents ADD COLUMN agent_disk_read_bytes INTEGER;
ALTER TABLE agents ADD COLUMN agent_disk_written_bytes INTEGER;
ALTER TABLE agents ADD COLUMN quarantined_versions TEXT;
ALTER TABLE agents ADD COLUMN command_keys TEXT;
ALTER TABLE agents ADD COLUMN enforcing INTEGER;
CREATE INDEX idx_agents_heartbeat ON agents (last_heartbeat);
