-- The trigram index keyed by org and week (one key of both: the org's id and the week's
-- number) instead of by org and day. A substring page of an org or of a busy agent walks
-- the scope's weeks back from its newest (SqlStore.week_walk) and reads the matches of the
-- weeks that fill it: a day's key held every org's memories of that day, an org's week key
-- holds its own. Each memory adds as many keys to it as before, so writes cost the same.
-- Building it takes about as long as the index it replaces; start-up waits for it.
CREATE INDEX memories_org_week_trigrams ON memories USING gin (org_id, (org_id || '|' || (time / 604800000000000)::text), content gin_trgm_ops);
DROP INDEX memories_org_content_trgm;
