"""What a store promises: two small protocols and the errors a store raises.

``ControlStore`` holds what a deployment knows about its tenants (orgs, keys, store
bindings, retention); ``TenantStore`` holds a tenant's data (agents, sessions, memories,
embeddings). ``Stores`` (``storage.routing``) resolves an org to its tenant store once.
Every tenant method takes ``org_id`` first and reaches no other organisation's rows;
``find_key`` is the one control method without an org: it is how a request learns it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from memtrace_server.core.errors import ApiError
from memtrace_server.core.records import (
    AgentDeletion,
    AgentRecord,
    AgentStatsRecord,
    ApiKeyRecord,
    ConsoleSessionRecord,
    MemoryFilter,
    MemoryRecord,
    OrgRecord,
    OrgStoreBinding,
    SessionRecord,
)


class StoreError(ApiError):
    """The store failed for a reason other than the request (disk, lock, connection).

    The message is for logs; clients get a fixed one.
    """

    status: ClassVar[int] = 503
    public_message: ClassVar[str] = "store unavailable, try again shortly"

    def body(self) -> dict[str, Any]:
        """The client's body, without the driver's details."""
        return {"error": self.public_message}


class StoreFull(StoreError):
    """The store has no space left for the write."""

    status: ClassVar[int] = 507
    public_message: ClassVar[str] = "the store is full: nothing was written"


class InvalidValue(ApiError):
    """A value the store cannot hold (for example a NUL character in PostgreSQL text)."""

    status: ClassVar[int] = 400

    def __init__(self, message: str) -> None:
        super().__init__(f"invalid value: {message}")


class DuplicateName(ApiError):
    """A unique name or id (agent, org, key) is already taken."""

    status: ClassVar[int] = 409


class MissingReference(ApiError, LookupError):
    """A row the write refers to (an org, an agent) does not exist."""

    status: ClassVar[int] = 404


class Lifecycle(Protocol):
    """Opening, closing and probing a store."""

    async def open(self) -> None:
        """Connect, apply migrations, start background workers."""

    async def close(self) -> None:
        """Finish pending writes and release every resource."""

    async def ping(self) -> None:
        """Raise StoreError if the store cannot answer a query."""


class ControlStore(Lifecycle, Protocol):
    """Orgs, their API keys, their store bindings and their retention."""

    async def create_org(self, org: OrgRecord) -> None:
        """Insert an org; DuplicateName if the id exists."""

    async def list_orgs(self) -> list[OrgRecord]:
        """All orgs, oldest first."""

    async def get_org(self, org_id: str) -> OrgRecord | None:
        """One org by id."""

    async def delete_org(self, org_id: str) -> bool:
        """Delete an org with its keys and binding (its data first: ``erase_org``)."""

    async def set_org_retention(self, org_id: str, days: int | None) -> bool:
        """Set (or clear, with None) how many days an org keeps memories; False if no org."""

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
        """Bind an org to its own store (replacing any binding); MissingReference if no org."""

    async def list_org_stores(self) -> list[OrgStoreBinding]:
        """Every org-to-store binding."""

    async def delete_org_store(self, org_id: str) -> bool:
        """Remove an org's binding; False if it had none."""

    # web console sign-ins
    async def create_console_session(self, session: ConsoleSessionRecord) -> None:
        """Store a console session (by the digest of its token)."""

    async def get_console_session(self, token_digest: str) -> ConsoleSessionRecord | None:
        """The console session with this token digest, if it exists."""

    async def touch_console_session(self, token_digest: str, now_ns: int) -> bool:
        """Record activity on a console session; False if it no longer exists."""

    async def delete_console_session(self, token_digest: str) -> bool:
        """End a console session; False if there was none."""

    async def purge_console_sessions(self, idle_before_ns: int) -> int:
        """Delete console sessions last seen before ``idle_before_ns``; how many."""


class TenantStore(Lifecycle, Protocol):
    """One store's share of tenant data; every method is scoped by ``org_id``."""

    async def ensure_org(self, org: OrgRecord) -> None:
        """Insert the org's row unless it exists (tenant rows refer to it)."""

    async def erase_org(self, org_id: str) -> None:
        """Delete every agent, session and memory of the org."""

    async def usage(self, org_id: str) -> dict[str, int]:
        """How many agents, sessions and memories the org has here."""

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

    async def update_agent(
        self,
        org_id: str,
        agent_id: str,
        description: str | None,
        config_patch: dict[str, Any] | None,
    ) -> AgentRecord | None:
        """Replace the description (when given) and merge the config; None if absent."""

    async def delete_agent(self, org_id: str, agent_id: str) -> AgentDeletion:
        """Delete an agent that no session refers to."""

    async def erase_agent(self, org_id: str, agent: AgentRecord) -> None:
        """Delete an agent with its sessions and every memory under its id or name."""

    async def agent_stats(self, org_id: str, agent_id: str, since_ns: int) -> AgentStatsRecord:
        """Memory and session counts for one agent id; "recent" means after ``since_ns``."""

    async def create_session(self, org_id: str, session: SessionRecord) -> None:
        """Insert a session; MissingReference if its agent does not exist."""

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

    async def delete_session(self, org_id: str, session_id: str, cascade: bool) -> bool:
        """Delete a session, and with ``cascade`` the memories carrying its id."""

    # memories
    async def insert_memories(
        self,
        org_id: str,
        memories: Sequence[MemoryRecord],
        dedup_window_ns: int | None,
        now_ns: int,
    ) -> list[bool]:
        """Insert memories in one transaction; report which were stored.

        With a window, a memory whose dedup key matches one stored and unexpired at
        ``now_ns`` (or earlier in this call) within ``dedup_window_ns`` of its time is
        skipped (False).
        """

    async def get_memory(self, org_id: str, ref: str) -> MemoryRecord | None:
        """A memory by id, else the newest with that dedup key."""

    async def query_memories(self, org_id: str, flt: MemoryFilter) -> list[MemoryRecord]:
        """Memories matching the filter, ordered by time (or rank), at most ``flt.limit``."""

    async def count_memories(self, org_id: str, flt: MemoryFilter) -> int:
        """How many memories match the filter (limit/offset ignored)."""

    async def count_by_day(
        self, org_id: str, flt: MemoryFilter, start_ns: int, days: int
    ) -> list[int]:
        """How many memories match the filter on each of ``days`` days (of 24 h) from
        ``start_ns``; the filter's own window is replaced by theirs."""

    async def delete_memory(self, org_id: str, memory_id: str) -> bool:
        """Erase one memory from every index; False if this org has none with that id."""

    async def delete_memories(self, org_id: str, flt: MemoryFilter) -> int:
        """Erase every memory matching the filter (limit/offset ignored); how many."""

    async def purge_expired(self, now_ns: int, retention_floors: dict[str, int]) -> int:
        """Erase expired memories and, per org, those at or before its retention floor."""

    # embeddings (hybrid search)
    async def pending_embeddings(self, org_id: str, limit: int) -> list[tuple[int, str, str]]:
        """(rid, id, content) of at most ``limit`` memories that have no embedding yet."""

    async def put_embeddings(self, org_id: str, rows: Sequence[tuple[int, str, bytes]]) -> None:
        """Store embeddings by (rid, id): a memory erased meanwhile is skipped, even when a
        new memory took its rid."""

    async def embedded_memories(
        self, org_id: str, flt: MemoryFilter
    ) -> list[tuple[MemoryRecord, bytes]]:
        """Memories matching the filter (``query`` ignored) that have an embedding,
        newest first, at most ``flt.limit``, with their embeddings."""

    # export and import
    async def export_memories(
        self, org_id: str, agent_id: str | None, after: tuple[int, int] | None, limit: int
    ) -> list[tuple[tuple[int, int], MemoryRecord]]:
        """The next page of an org's memories in stored order, each with its cursor."""

    async def import_memories(
        self, org_id: str, memories: Sequence[MemoryRecord], now_ns: int
    ) -> int:
        """Insert the memories whose ids are new, history as it is; a current version whose
        key already has one here competes with it as a write would. How many were new."""

    async def import_agent(self, org_id: str, agent: AgentRecord) -> bool:
        """Insert an agent unless its id or name exists."""

    async def import_session(self, org_id: str, session: SessionRecord) -> bool:
        """Insert a session unless its id exists (its agent must exist)."""


class Store(ControlStore, TenantStore, Protocol):
    """One database holding both: what each backend is."""
