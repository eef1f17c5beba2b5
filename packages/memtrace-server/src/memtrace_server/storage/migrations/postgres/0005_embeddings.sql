-- Optional hybrid search (memtrace-server[semantic]): a float32 sentence embedding per
-- memory, filled in the background after the write; NULL until then (or when off). The
-- rid index lets the embedder walk new memories in insertion order.
ALTER TABLE memories ADD COLUMN embedding bytea;
CREATE INDEX memories_rid ON memories (rid);
