-- content_contains narrowed by trigrams: every three characters of a memory's content, with
-- rowids only (no positions, no copy of the text). The index narrows, instr() decides.
CREATE VIRTUAL TABLE memories_trigram USING fts5(content, tokenize = 'trigram case_sensitive 1', detail = 'none', content = '');
INSERT INTO memories_trigram (rowid, content) SELECT rid, content FROM memories;
