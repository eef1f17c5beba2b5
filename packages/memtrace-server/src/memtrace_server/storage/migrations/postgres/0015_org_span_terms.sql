-- The word index keyed by org and 30-day span instead of day: a large agent's ranked query
-- walks its history a span at a time for its pool of newest matches (a day at a time, a
-- long history took hundreds of probes; a range of days in one probe reads every org's
-- entries of those days). Each memory still adds one key to it, so writes cost the same. A
-- query that names no span still uses it as the org's word index. Building it took about
-- 20 s on the benchmark's 1M-memory store; start-up waits for it.
CREATE INDEX memories_org_span_terms ON memories USING gin (org_id, (time / 2592000000000000), tsv);
DROP INDEX memories_org_day_terms;
