-- content_contains walks an org's or an agent's history back a week at a time: besides its
-- content's trigrams, each memory's row in the substring index holds a token of its org's
-- week and one of its agent's (substring_scopes() is the store's own function), so a page
-- reads the matches of the weeks that fill it, not every match of the whole history.
DROP TABLE memories_trigram;
CREATE VIRTUAL TABLE memories_trigram USING fts5(content, scope, tokenize = 'trigram case_sensitive 1', detail = 'none', content = '');
INSERT INTO memories_trigram (rowid, content, scope) SELECT rid, content, substring_scopes(org_id, agent_id, time) FROM memories;
