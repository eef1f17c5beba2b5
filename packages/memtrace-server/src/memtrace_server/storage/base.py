"""The store protocol every backend implements.

Every method that touches tenant data takes ``org_id`` first; no method can reach
another organisation's rows. ``find_key`` is the one exception: it is how a request
learns its organisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from memtrace_server.core.records import (
    AgentRecord,
    AgentStatsRecord,
    ApiKeyRecord,
    MemoryFilter,
    MemoryRecord,
    OrgRecord,
    OrgStoreBinding,
    SessionRecord,
)


class StoreError(Exception):
    """The store failed for a reason other than the request (disk, lock, connection)."""


class StoreFull(StoreError):
    """The store has no space left for the write."""


class InvalidValue(ValueError):
    """A value the store cannot hold (for example a NUL character in PostgreSQL text)."""


class DuplicateName(Exception):
    """A unique name (agent, org, key) is already taken."""


class Store(Protocol):
    """Persistence for orgs, keys, agents, sessions and memories."""

    async def open(self) -> None:
        """Connect, apply migrations, start background workers."""

    async def close(self) -> None:
        """Finish pending writes and release every resource."""

    async def ping(self) -> None:
        """Raise StoreError if the store cannot answer a query."""

    # organisations and keys
    async def create_org(self, org: OrgRecord) -> None:
        """Insert an org; DuplicateName if the id exists."""

    async def list_orgs(self) -> list[OrgRecord]:
        """All orgs, oldest first."""

    async def get_org(self, org_id: str) -> OrgRecord | None:
        """One org by id."""

    async def delete_org(self, org_id: str) -> bool:
        """Delete an org and everything it owns; False if it did not exist."""

    async def org_usage(self, org_id: str) -> dict[str, int]:
        """Counts of keys, agents, sessions and memories an org owns."""

    async def create_key(
        self, org_id: str, name: str, digest: str, prefix: str, permissions: str, now_ns: int
    ) -> ApiKeyRecord:
        """Store a key digest; DuplicateName if the org already has a key of that name."""

    async def list_keys(self, org_id: str) -> list[ApiKeyRecord]:
        """Keys of one org, oldest first."""

    async def revoke_key(self, key_id: int, org_id: str | None = None) -> bool:
        """Delete a key (within ``org_id`` when given); False if there was none."""

    async def find_key(self, digest: str) -> ApiKeyRecord | None:
        """The key with this SHA-256 digest, if it exists."""

    async def set_org_store(self, binding: OrgStoreBinding) -> None:
        """Bind an org to its own store (replacing any binding); LookupError if no such org."""

    async def list_org_stores(self) -> list[OrgStoreBinding]:
        """Every org-to-store binding."""

    async def delete_org_store(self, org_id: str) -> bool:
        """Remove an org's binding; False if it had none."""

    # agents and sessions
    async def register_agent(self, org_id: str, agent: AgentRecord) -> AgentRecord:
        """Insert an agent, or adopt an implicit agent of the same name.

        DuplicateName if an explicitly registered agent already has the name.
        """

    async def ensure_agent(self, org_id: str, ref: str, implicit: AgentRecord) -> AgentRecord:
        """The agent whose id or name is ``ref``, inserting ``implicit`` if there is none."""

    async def get_agent(self, org_id: str, ref: str) -> AgentRecord | None:
        """The agent whose id (or else name) is ``ref``."""

    async def list_agents(self, org_id: str) -> list[AgentRecord]:
        """Agents of one org, newest first."""

    async def delete_agent(self, org_id: str, agent_id: str) -> bool | int:
        """Delete an agent with no sessions: True; False if absent; else its session count."""

    async def agent_stats(self, org_id: str, agent_id: str, now_ns: int) -> AgentStatsRecord:
        """Memory and session counts for one agent id."""

    async def create_session(self, org_id: str, session: SessionRecord) -> None:
        """Insert a session for an existing agent."""

    async def get_session(self, org_id: str, session_id: str) -> SessionRecord | None:
        """One session."""

    async def list_sessions(self, org_id: str, agent_id: str | None) -> list[SessionRecord]:
        """Sessions of an org (optionally of one agent), newest first."""

    async def update_session(
        self,
        org_id: str,
        session_id: str,
        status: str | None,
        metadata_patch: dict[str, Any] | None,
        now_ns: int,
    ) -> SessionRecord | None:
        """Apply a status change and a metadata merge atomically; None if absent."""

    # memories
    async def insert_memories(
        self, org_id: str, memories: Sequence[MemoryRecord], dedup_window_ns: int | None
    ) -> list[bool]:
        """Insert memories in one transaction; report which were stored.

        With a window, a memory whose dedup key matches one stored (or earlier in this
        call) within ``dedup_window_ns`` of its time is skipped (False).
        """

    async def get_memory(self, org_id: str, ref: str) -> MemoryRecord | None:
        """A memory by id, else the newest with that dedup key."""

    async def query_memories(self, org_id: str, flt: MemoryFilter) -> list[MemoryRecord]:
        """Memories matching the filter, ordered by time, at most ``flt.limit``."""

    # embeddings (hybrid search)
    async def pending_embeddings(
        self, org_id: str, after_rid: int, limit: int
    ) -> list[tuple[int, str]]:
        """(rid, content) of memories after ``after_rid`` that have no embedding yet."""

    async def put_embeddings(self, org_id: str, rows: Sequence[tuple[int, bytes]]) -> None:
        """Store embeddings by rid (memories erased meanwhile are skipped)."""

    async def embedded_memories(
        self, org_id: str, flt: MemoryFilter
    ) -> list[tuple[MemoryRecord, bytes]]:
        """Memories matching the filter (``query`` ignored) that have an embedding,
        newest first, at most ``flt.limit``, with their embeddings."""

    # lifecycle

    async def set_org_retention(self, org_id: str, days: int | None) -> bool:
        """Set (or clear, with None) how many days an org keeps memories; False if no org."""

    async def delete_memory(self, org_id: str, memory_id: str) -> bool:
        """Erase one memory from every index; False if this org has none with that id."""

    async def delete_memories(self, org_id: str, flt: MemoryFilter) -> int:
        """Erase every memory matching the filter (limit/offset ignored); how many."""

    async def count_memories(self, org_id: str, flt: MemoryFilter) -> int:
        """How many memories match the filter (limit/offset ignored)."""

    async def delete_session(self, org_id: str, session_id: str, cascade: bool) -> bool:
        """Delete a session, and with ``cascade`` the memories carrying its id."""

    async def erase_agent(self, org_id: str, agent: AgentRecord) -> None:
        """Delete an agent with its sessions and every memory under its id or name."""

    async def update_agent(
        self,
        org_id: str,
        agent_id: str,
        description: str | None,
        config_patch: dict[str, Any] | None,
    ) -> AgentRecord | None:
        """Replace the description (when given) and merge the config; None if absent."""

    async def purge_expired(self, now_ns: int, retention_floors: dict[str, int]) -> int:
        """Erase expired memories and, per org, those at or before its retention floor."""

    async def export_memories(
        self, org_id: str, agent_id: str | None, after: tuple[int, int] | None, limit: int
    ) -> list[tuple[tuple[int, int], MemoryRecord]]:
        """The next page of an org's memories in stored order, each with its cursor."""

    async def import_memories(self, org_id: str, memories: Sequence[MemoryRecord]) -> int:
        """Insert the memories whose ids are new; how many were inserted."""

    async def import_agent(self, org_id: str, agent: AgentRecord) -> bool:
        """Insert an agent unless its id or name exists."""

    async def import_session(self, org_id: str, session: SessionRecord) -> bool:
        """Insert a session unless its id exists (its agent must exist)."""
