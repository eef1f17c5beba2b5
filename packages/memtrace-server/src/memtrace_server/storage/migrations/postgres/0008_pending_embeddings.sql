-- What the background embedder has left to do, cheap to find whatever the rids.
CREATE INDEX memories_unembedded ON memories (org_id, rid) WHERE embedding IS NULL;
