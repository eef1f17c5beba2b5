-- Keyed memories: a fact that changes keeps its history; only the current version is read
-- by default. memory_meta indexes top-level scalar metadata fields for exact filters.
ALTER TABLE memories ADD COLUMN memory_key TEXT;
ALTER TABLE memories ADD COLUMN superseded_by TEXT;
ALTER TABLE memories ADD COLUMN superseded_at INTEGER;
CREATE UNIQUE INDEX memories_current_key ON memories (org_id, agent_id, memory_key)
    WHERE memory_key IS NOT NULL AND superseded_by IS NULL;
CREATE INDEX memories_key_versions ON memories (org_id, agent_id, memory_key, time)
    WHERE memory_key IS NOT NULL;
CREATE TABLE memory_meta (
    org_id TEXT NOT NULL,
    field  TEXT NOT NULL,
    vtype  TEXT NOT NULL,
    value,
    time   INTEGER NOT NULL,
    rid    INTEGER NOT NULL
);
-- newest first within one field value: a filtered list stops after its page
CREATE INDEX memory_meta_lookup ON memory_meta (org_id, field, vtype, value, time, rid);
CREATE INDEX memory_meta_rid ON memory_meta (rid);
INSERT INTO memory_meta (org_id, field, vtype, value, time, rid)
SELECT m.org_id,
       j.key,
       CASE j.type WHEN 'text' THEN 's' WHEN 'integer' THEN 'n' WHEN 'real' THEN 'n'
                   WHEN 'true' THEN 'b' WHEN 'false' THEN 'b' ELSE 'z' END,
       CASE j.type WHEN 'true' THEN 1 WHEN 'false' THEN 0 ELSE j.value END,
       m.time,
       m.rid
FROM memories m, json_each(m.metadata_json) j
WHERE m.metadata_json IS NOT NULL AND j.type NOT IN ('object', 'array');
