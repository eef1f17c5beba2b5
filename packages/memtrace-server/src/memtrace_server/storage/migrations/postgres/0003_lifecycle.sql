-- Memory lifecycle: expiry per memory, retention per org, activity of sessions.
ALTER TABLE memories ADD COLUMN expires_at bigint;
ALTER TABLE sessions ADD COLUMN last_active_at bigint;
ALTER TABLE orgs ADD COLUMN retention_days integer;
CREATE INDEX memories_expires ON memories (expires_at) WHERE expires_at IS NOT NULL;
