-- Ranked search per org: every word of the full-text index carries its org's prefix
-- (core.text.term_prefix), so a term's posting list holds one org's memories. A search
-- walks its own org's matches, not the store's, and bm25() weighs a word by how common it
-- is in that org only. The index is contentless; the text it was built from (and that the
-- pooled ranking reads) is kept in memory_text. org_words() is the store's own function.
CREATE TABLE memory_text (
    rid     INTEGER PRIMARY KEY,
    content TEXT NOT NULL,
    labels  TEXT NOT NULL,
    context TEXT NOT NULL
);
INSERT INTO memory_text (rid, content, labels, context)
SELECT id, c1, c2, coalesce(c3, '') FROM memories_fts_content;
DROP TABLE memories_fts;
CREATE VIRTUAL TABLE memory_terms USING fts5(scope, content, labels, context, tokenize = 'porter unicode61 remove_diacritics 2', content = '');
INSERT INTO memory_terms (rowid, scope, content, labels, context)
SELECT t.rid,
       'o' || lower(hex(m.org_id)) || ' a' || lower(hex(m.org_id || '|' || m.agent_id)),
       org_words(m.org_id, t.content),
       org_words(m.org_id, t.labels),
       org_words(m.org_id, t.context)
FROM memory_text t JOIN memories m ON m.rid = t.rid;
