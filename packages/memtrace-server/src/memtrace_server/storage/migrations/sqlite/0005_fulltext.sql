-- Ranked text search: BM25 over content and tags/event type, with org and agent scope
-- tokens so a tenant-scoped search intersects posting lists instead of filtering after.
CREATE VIRTUAL TABLE memories_fts USING fts5(scope, content, labels, tokenize = 'porter unicode61 remove_diacritics 2');

INSERT INTO memories_fts (rowid, scope, content, labels)
SELECT rid,
       'o' || lower(hex(org_id)) || ' a' || lower(hex(org_id || '|' || agent_id)),
       content,
       coalesce((SELECT group_concat(value, ' ') FROM json_each(memories.tags)), '') || ' ' || event_type
FROM memories;
