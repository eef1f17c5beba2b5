-- Agent stats without counting an agent's history: current memories per (agent, type),
-- in all (hour = -4611686018427387904) and per hour of their time (for the last 24 hours).
-- Kept by the store's write and erase operations, in the same transaction.
CREATE TABLE agent_tallies (
    org_id      TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    memory_type TEXT NOT NULL,
    hour        BIGINT NOT NULL,
    memories    BIGINT NOT NULL,
    errors      BIGINT NOT NULL,
    PRIMARY KEY (org_id, agent_id, memory_type, hour)
);
-- An agent's rows by hour: its all-time rows, and the hours of a stats window.
CREATE INDEX agent_tallies_hour ON agent_tallies (org_id, agent_id, hour);
INSERT INTO agent_tallies (org_id, agent_id, memory_type, hour, memories, errors)
SELECT org_id, agent_id, memory_type, -4611686018427387904, count(*),
       count(*) FILTER (WHERE event_type = 'error')
FROM memories WHERE superseded_by IS NULL GROUP BY org_id, agent_id, memory_type;
INSERT INTO agent_tallies (org_id, agent_id, memory_type, hour, memories, errors)
SELECT org_id, agent_id, memory_type, time / 3600000000000, count(*),
       count(*) FILTER (WHERE event_type = 'error')
FROM memories WHERE superseded_by IS NULL
GROUP BY org_id, agent_id, memory_type, time / 3600000000000;
