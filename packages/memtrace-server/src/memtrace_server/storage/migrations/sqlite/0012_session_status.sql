-- Agent stats count an agent's sessions, open and all, from this index alone.
CREATE INDEX sessions_org_agent_status ON sessions (org_id, agent_id, status);
