"""Agents and sessions."""

from __future__ import annotations

from memtrace_server.core.errors import BadRequest, Conflict, NotFound
from memtrace_server.core.ids import new_agent_id, new_session_id
from memtrace_server.core.records import AgentRecord, AgentStatsRecord, SessionRecord
from memtrace_server.core.requests import (
    CreateSessionRequest,
    RegisterAgentRequest,
    UpdateAgentRequest,
    UpdateSessionRequest,
)
from memtrace_server.core.rules import stats_window_start
from memtrace_server.core.timefmt import now_ns
from memtrace_server.core.validation import ID_RE, check_id
from memtrace_server.storage.base import DuplicateName, MissingReference
from memtrace_server.storage.routing import Stores

MAX_REF = 256


def _check_ref(ref: str) -> str:
    if not ref or len(ref) > MAX_REF:
        raise BadRequest(f"invalid agent id or name: 1 to {MAX_REF} characters")
    return ref


class Agents:
    """Agent and session use cases for one store."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    async def register(self, org_id: str, req: RegisterAgentRequest) -> AgentRecord:
        """Register an agent; 409 when the name is taken in this org.

        An agent created implicitly by a session under this name is adopted instead,
        so registering after creating a session (as the seed's multi-agent flow does) works.
        """
        store = await self.stores.tenant(org_id)
        if len(req.name) > MAX_REF:
            raise BadRequest(f"name must be at most {MAX_REF} characters")
        record = AgentRecord(
            id=new_agent_id(),
            org_id=org_id,
            name=req.name,
            description=req.description,
            config=req.config or None,
            created_at_ns=now_ns(),
        )
        try:
            return await store.register_agent(org_id, record)
        except DuplicateName:
            raise Conflict(f"agent '{req.name}' already exists in this organization") from None

    async def get(self, org_id: str, ref: str) -> AgentRecord:
        """An agent by id or name; 404 when absent."""
        store = await self.stores.tenant(org_id)
        found = await store.get_agent(org_id, _check_ref(ref))
        if found is None:
            raise NotFound("agent not found")
        return found

    async def list_agents(self, org_id: str) -> list[AgentRecord]:
        """All agents of the org, newest first."""
        store = await self.stores.tenant(org_id)
        return await store.list_agents(org_id)

    async def delete(self, org_id: str, ref: str, *, cascade: bool = False) -> None:
        """Delete an agent by id or name; 409 while sessions still refer to it.

        With ``cascade`` its sessions and every memory under its id or name go too.
        """
        store = await self.stores.tenant(org_id)
        agent = await self.get(org_id, ref)
        if cascade:
            await store.erase_agent(org_id, agent)
            return
        deletion = await store.delete_agent(org_id, agent.id)
        if deletion.outcome == "absent":
            raise NotFound("agent not found")
        if deletion.outcome == "has_sessions":
            raise Conflict(f"agent '{agent.id}' still has {deletion.sessions} session(s)")

    async def update(self, org_id: str, ref: str, req: UpdateAgentRequest) -> AgentRecord:
        """Change an agent's description and merge its config; 404 when absent."""
        store = await self.stores.tenant(org_id)
        agent = await self.get(org_id, ref)
        updated = await store.update_agent(org_id, agent.id, req.description, req.config)
        if updated is None:
            raise NotFound("agent not found")
        return updated

    async def delete_session(self, org_id: str, session_id: str, *, cascade: bool) -> None:
        """Delete a session (with ``cascade``, its memories too); 404 when absent."""
        store = await self.stores.tenant(org_id)
        check_id("session_id", session_id)
        if not await store.delete_session(org_id, session_id, cascade):
            raise NotFound("session not found")

    async def stats(self, org_id: str, agent_id: str) -> AgentStatsRecord:
        """Counts for an agent id (zeros for an id never used)."""
        check_id("agent_id", agent_id)
        store = await self.stores.tenant(org_id)
        return await store.agent_stats(org_id, agent_id, stats_window_start(now_ns()))

    async def create_session(self, org_id: str, req: CreateSessionRequest) -> SessionRecord:
        """Open a session for an agent given by id or name.

        An unknown ``agent_id`` that is a valid id registers that agent on the fly
        (id and name both the given string), so sessions work before registration.
        """
        store = await self.stores.tenant(org_id)
        ref = _check_ref(req.agent_id)
        now = now_ns()
        found = await store.get_agent(org_id, ref)
        if found is None:
            if not ID_RE.match(ref):
                check_id("agent_id", ref)
            found = await store.ensure_agent(
                org_id,
                ref,
                AgentRecord(id=ref, org_id=org_id, name=ref, created_at_ns=now, implicit=True),
            )
        session = SessionRecord(
            id=new_session_id(),
            org_id=org_id,
            agent_id=found.id,
            metadata=req.metadata or None,
            created_at_ns=now,
            updated_at_ns=now,
        )
        try:
            await store.create_session(org_id, session)
        except MissingReference:
            raise NotFound("agent not found") from None
        return session

    async def get_session(self, org_id: str, session_id: str) -> SessionRecord:
        """A session; 404 when absent."""
        store = await self.stores.tenant(org_id)
        check_id("session_id", session_id)
        found = await store.get_session(org_id, session_id)
        if found is None:
            raise NotFound("session not found")
        return found

    async def list_sessions(self, org_id: str, agent_id: str | None) -> list[SessionRecord]:
        """Sessions, newest first, optionally of one agent (id or name)."""
        store = await self.stores.tenant(org_id)
        if agent_id:
            agent = await store.get_agent(org_id, _check_ref(agent_id))
            agent_id = agent.id if agent else agent_id
        return await store.list_sessions(org_id, agent_id or None)

    async def update_session(
        self, org_id: str, session_id: str, req: UpdateSessionRequest
    ) -> SessionRecord:
        """Change status and merge metadata; 404 when absent."""
        store = await self.stores.tenant(org_id)
        check_id("session_id", session_id)
        updated = await store.update_session(org_id, session_id, req.status, req.metadata, now_ns())
        if updated is None:
            raise NotFound("session not found")
        return updated
