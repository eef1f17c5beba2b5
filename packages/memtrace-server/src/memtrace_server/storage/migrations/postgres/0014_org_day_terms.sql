-- The word index keyed by org and day too, like the substring and tag indexes: a busy agent's
-- ranked query finds its pool of newest matches by walking its newest days one at a time,
-- instead of fetching every match of its history to sort them (at 1M, 16k matches for the
-- pool's 2,000). A query that names no day still uses it as the org's word index. Building
-- it took 88 s on the benchmark's 1M-memory store (maintenance_work_mem 256 MB); start-up
-- waits for it.
CREATE INDEX memories_org_day_terms ON memories USING gin (org_id, (time / 86400000000000), tsv);
DROP INDEX memories_org_terms;
