-- Web console sign-ins: only a digest of the session token is stored. A session is tied to
-- the digest of the API key that opened it, so revoking the key ends it.
CREATE TABLE console_sessions (
    token_digest text PRIMARY KEY,
    org_id       text NOT NULL,
    key_digest   text NOT NULL,
    csrf_token   text NOT NULL,
    created_at   bigint NOT NULL,
    last_seen_at bigint NOT NULL
);

CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen_at);
