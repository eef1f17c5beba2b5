-- Ranked text search: BM25 over content, labels (tags, event type) and context (the
-- neighbouring memories of the same session), with org and agent scope tokens so a
-- tenant-scoped search intersects posting lists instead of filtering afterwards.
CREATE VIRTUAL TABLE memories_fts USING fts5(scope, content, labels, context, tokenize = 'porter unicode61 remove_diacritics 2');

INSERT INTO memories_fts (rowid, scope, content, labels, context)
SELECT rid,
       'o' || lower(hex(org_id)) || ' a' || lower(hex(org_id || '|' || agent_id)),
       content,
       coalesce((SELECT group_concat(value, ' ') FROM json_each(memories.tags)), '') || ' ' || event_type,
       CASE WHEN session_id = '' THEN '' ELSE
           coalesce(lag(content) OVER w, '') || ' ' || coalesce(lead(content) OVER w, '') END
FROM memories
WINDOW w AS (PARTITION BY org_id, session_id ORDER BY time, rid);
