-- Ranked text search: content (A) above tags and event type (C) and the neighbouring
-- memories of the same session (D); GIN over the vector.
-- array_to_string is only STABLE, so an IMMUTABLE wrapper lets the column be generated.
CREATE FUNCTION memtrace_labels(tags text[], event_type text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT array_to_string(tags, ' ') || ' ' || event_type $$;
ALTER TABLE memories ADD COLUMN context text NOT NULL DEFAULT '';
ALTER TABLE memories ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', content), 'A')
    || setweight(to_tsvector('english', memtrace_labels(tags, event_type)), 'C')
    || setweight(to_tsvector('english', context), 'D')
) STORED;
CREATE INDEX memories_tsv ON memories USING gin (tsv);
