-- Organisations, keys, agents, sessions and memories in one file.
-- Times are INTEGER nanoseconds since the Unix epoch, UTC.

CREATE TABLE orgs (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    settings_json TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      TEXT NOT NULL REFERENCES orgs(id),
    name        TEXT NOT NULL,
    key_digest  TEXT NOT NULL UNIQUE,
    key_prefix  TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    UNIQUE (org_id, name)
);

CREATE TABLE agents (
    org_id         TEXT NOT NULL REFERENCES orgs(id),
    id             TEXT NOT NULL,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL DEFAULT '',
    config_json    TEXT NOT NULL DEFAULT '{}',
    implicit       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    last_active_at INTEGER,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, name)
) WITHOUT ROWID;

CREATE TABLE sessions (
    org_id        TEXT NOT NULL,
    id            TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'active',
    metadata_json TEXT NOT NULL DEFAULT '{}',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    closed_at     INTEGER,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, agent_id) REFERENCES agents (org_id, id)
) WITHOUT ROWID;

CREATE INDEX sessions_org_agent ON sessions (org_id, agent_id, created_at);
CREATE INDEX sessions_org_created ON sessions (org_id, created_at);

CREATE TABLE memories (
    rid           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    org_id        TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    session_id    TEXT NOT NULL DEFAULT '',
    memory_type   TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    content       TEXT NOT NULL,
    metadata_json TEXT,
    tags_json     TEXT,
    dedup_key     TEXT NOT NULL DEFAULT '',
    importance    REAL NOT NULL DEFAULT 0,
    parent_id     TEXT NOT NULL DEFAULT '',
    time          INTEGER NOT NULL
);

CREATE INDEX memories_org_agent_time ON memories (org_id, agent_id, time);
CREATE INDEX memories_org_session_time ON memories (org_id, session_id, time);
CREATE INDEX memories_org_time ON memories (org_id, time);
CREATE INDEX memories_org_dedup_time ON memories (org_id, dedup_key, time);

-- Exact tag membership: one row per (memory, tag).
CREATE TABLE memory_tags (
    org_id TEXT NOT NULL,
    tag    TEXT NOT NULL,
    time   INTEGER NOT NULL,
    rid    INTEGER NOT NULL,
    PRIMARY KEY (org_id, tag, time, rid)
) WITHOUT ROWID;

CREATE INDEX memory_tags_rid ON memory_tags (rid);
