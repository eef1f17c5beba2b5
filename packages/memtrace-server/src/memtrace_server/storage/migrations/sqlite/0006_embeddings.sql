-- Optional hybrid search (memtrace-server[semantic]): a float32 sentence embedding per
-- memory, filled in the background after the write; NULL until then (or when off).
ALTER TABLE memories ADD COLUMN embedding BLOB;
