-- Web console sign-ins: only a digest of the session token is stored. A session is tied to
-- the digest of the API key that opened it, so revoking the key ends it.
CREATE TABLE console_sessions (
    token_digest TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    key_digest   TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen_at);
