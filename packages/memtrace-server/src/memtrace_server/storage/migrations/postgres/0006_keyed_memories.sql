-- Keyed memories: a fact that changes keeps its history; only the current version is read
-- by default. Writers of one key serialise on an advisory lock (a unique index cannot span
-- partitions). Metadata filters use jsonb containment on an expression index.
ALTER TABLE memories ADD COLUMN memory_key text;
ALTER TABLE memories ADD COLUMN superseded_by text;
ALTER TABLE memories ADD COLUMN superseded_at bigint;
CREATE INDEX memories_key_versions ON memories (org_id, agent_id, memory_key, time)
    WHERE memory_key IS NOT NULL;
CREATE INDEX memories_metadata ON memories USING gin ((metadata_json::jsonb) jsonb_path_ops);
