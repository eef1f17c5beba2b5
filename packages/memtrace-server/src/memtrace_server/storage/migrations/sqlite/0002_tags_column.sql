-- Same column name as the PostgreSQL backend, so both share one column list.
ALTER TABLE memories RENAME COLUMN tags_json TO tags;
