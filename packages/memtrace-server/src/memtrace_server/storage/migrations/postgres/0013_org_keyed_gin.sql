-- The GIN indexes (words, trigrams, tags, metadata) keyed by org first. Every memory query
-- names its org, and an index of the whole store made each lookup read every org's entries
-- for its words or tags, then intersect them with the org's rows: at 1M memories, the ranked
-- query of one org of ten built bitmaps of 17k word matches and 21k org rows to keep 1.7k.
-- GIN intersects the org's entry with the others' itself, skipping ahead in the longer list.
-- Substrings and tags are keyed by day too: a read of them walks its scope's newest days
-- one at a time and stops at its page, instead of fetching every match to sort them.
-- btree_gin (the org column in a GIN index) is a trusted extension of PostgreSQL's contrib
-- (13+), like pg_trgm: a database owner may create it. Building these took 72 s on a copy of
-- the benchmark's 1M-memory store; start-up waits for it.
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX memories_org_terms ON memories USING gin (org_id, tsv);
CREATE INDEX memories_org_content_trgm ON memories USING gin (org_id, (time / 86400000000000), content gin_trgm_ops);
CREATE INDEX memories_org_tags ON memories USING gin (org_id, (time / 86400000000000), tags);
CREATE INDEX memories_org_metadata ON memories USING gin (org_id, (metadata_json::jsonb) jsonb_path_ops);
DROP INDEX memories_tsv;
DROP INDEX memories_content_trgm;
DROP INDEX memories_tags;
DROP INDEX memories_metadata;
