-- Each org's own all-time tally row (agent and memory type ''; no memory's agent id is
-- empty), the sum of its agents' all-time rows, kept in the same transactions. Ranking reads
-- an org's size from it: summed over the registered agents, it missed every agent that only
-- ever wrote memories (a memory names its agent; only sessions and the agents API register
-- one), and read 0 for an org of such agents.
INSERT INTO agent_tallies (org_id, agent_id, memory_type, hour, memories, errors)
SELECT org_id, '', '', -4611686018427387904, sum(memories), sum(errors)
FROM agent_tallies WHERE hour = -4611686018427387904 AND agent_id <> '' GROUP BY org_id
ON CONFLICT (org_id, agent_id, memory_type, hour) DO UPDATE
SET memories = excluded.memories, errors = excluded.errors;
