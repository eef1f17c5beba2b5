-- Agent stats without counting an agent's sessions: its sessions, all and open. Kept by the
-- store's session operations, in the same transaction.
CREATE TABLE agent_sessions (
    org_id   TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    sessions BIGINT NOT NULL,
    active   BIGINT NOT NULL,
    PRIMARY KEY (org_id, agent_id)
) WITHOUT ROWID;
INSERT INTO agent_sessions (org_id, agent_id, sessions, active)
SELECT org_id, agent_id, count(*), count(*) FILTER (WHERE status = 'active')
FROM sessions GROUP BY org_id, agent_id;
