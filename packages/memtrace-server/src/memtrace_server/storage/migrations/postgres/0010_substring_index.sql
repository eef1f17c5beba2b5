-- content_contains through trigrams: a case-sensitive LIKE '%…%' (the exact substring test)
-- that the planner can answer from this index. pg_trgm is a trusted extension of PostgreSQL's
-- contrib (13+): a database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX memories_content_trgm ON memories USING gin (content gin_trgm_ops);
