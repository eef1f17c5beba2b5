-- Organisations, keys, agents, sessions and memories. Times are bigint nanoseconds, UTC.
-- Every query filters by org_id, so the tables can later be distributed by org_id.

CREATE TABLE orgs (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    created_at    bigint NOT NULL,
    settings_json text NOT NULL DEFAULT '{}'
);

CREATE TABLE api_keys (
    id          bigserial PRIMARY KEY,
    org_id      text NOT NULL REFERENCES orgs (id),
    name        text NOT NULL,
    key_digest  text NOT NULL UNIQUE,
    key_prefix  text NOT NULL,
    permissions text NOT NULL,
    created_at  bigint NOT NULL,
    expires_at  bigint,
    UNIQUE (org_id, name)
);

CREATE TABLE agents (
    org_id         text NOT NULL REFERENCES orgs (id),
    id             text NOT NULL,
    name           text NOT NULL,
    description    text NOT NULL DEFAULT '',
    config_json    text NOT NULL DEFAULT '{}',
    implicit       boolean NOT NULL DEFAULT false,
    created_at     bigint NOT NULL,
    last_active_at bigint,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, name)
);

CREATE TABLE sessions (
    org_id        text NOT NULL,
    id            text NOT NULL,
    agent_id      text NOT NULL,
    status        text NOT NULL DEFAULT 'active',
    metadata_json text NOT NULL DEFAULT '{}',
    created_at    bigint NOT NULL,
    updated_at    bigint NOT NULL,
    closed_at     bigint,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, agent_id) REFERENCES agents (org_id, id)
);

CREATE INDEX sessions_org_agent ON sessions (org_id, agent_id, created_at);
CREATE INDEX sessions_org_created ON sessions (org_id, created_at);

-- Range-partitioned by time: monthly partitions are created ahead by the server; the
-- default partition takes anything outside them (old backfills), so no insert fails.
CREATE TABLE memories (
    rid           bigserial,
    id            text NOT NULL,
    org_id        text NOT NULL,
    agent_id      text NOT NULL,
    session_id    text NOT NULL DEFAULT '',
    memory_type   text NOT NULL,
    event_type    text NOT NULL,
    content       text NOT NULL,
    metadata_json text,
    tags          text[] NOT NULL DEFAULT '{}',
    dedup_key     text NOT NULL DEFAULT '',
    importance    double precision NOT NULL DEFAULT 0,
    parent_id     text NOT NULL DEFAULT '',
    time          bigint NOT NULL
) PARTITION BY RANGE (time);

CREATE TABLE memories_default PARTITION OF memories DEFAULT;

CREATE INDEX memories_org_id ON memories (org_id, id);
CREATE INDEX memories_org_agent_time ON memories (org_id, agent_id, time);
CREATE INDEX memories_org_session_time ON memories (org_id, session_id, time);
CREATE INDEX memories_org_time ON memories (org_id, time);
CREATE INDEX memories_org_dedup_time ON memories (org_id, dedup_key, time);
CREATE INDEX memories_tags ON memories USING gin (tags);
