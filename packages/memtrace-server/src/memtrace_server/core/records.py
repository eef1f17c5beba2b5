"""Plain records passed between the service and the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

MEMORY_TYPES = ("episodic", "session", "decision", "entity")
MetadataScalar = str | int | float | bool | None
PERMISSIONS = ("read", "write", "admin")


# Not frozen: a read builds one per row, and a frozen dataclass's __init__ sets each of
# its 18 fields through object.__setattr__ (2.6 against 1.1 µs a record). Nothing mutates one.
@dataclass(slots=True)
class MemoryRecord:
    """One stored memory. ``time_ns`` is UTC nanoseconds; empty strings mean "not set"."""

    id: str
    org_id: str
    agent_id: str
    content: str
    time_ns: int
    memory_type: str = "episodic"
    event_type: str = "general"
    session_id: str = ""
    metadata: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    dedup_key: str = ""
    importance: float = 0.0
    parent_id: str = ""
    expires_at_ns: int | None = None
    score: float | None = None  # relevance, set only by ranked searches
    key: str = ""  # a fact that changes: remembering under the same key supersedes
    superseded_by: str = ""  # the version that replaced this one
    superseded_at_ns: int | None = None


@dataclass(frozen=True, slots=True)
class MemoryBatch:
    """One call that inserts memories: the org, its memories in order, the dedup window
    (None: no dedup) and the caller's "now" (for expiry and supersede times)."""

    org_id: str
    memories: tuple[MemoryRecord, ...]
    dedup_window_ns: int | None
    now_ns: int


@dataclass(frozen=True, slots=True)
class MemoryFilter:
    """Structured filters shared by list, search, agent/session memories and context.

    ``since_ns``/``until_ns`` are strict bounds. ``tags`` must all be present (exact membership).
    """

    agent_id: str | None = None
    session_id: str | None = None
    memory_types: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    content_contains: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    min_importance: float | None = None
    limit: int = 100
    offset: int = 0
    ascending: bool = False
    visible_at_ns: int | None = None  # hide memories that expired by then
    query: tuple[str, ...] = ()  # ranked text search: any of these terms, best first
    key: str | None = None  # exactly this memory key
    include_superseded: bool = False  # older versions of keyed memories too
    metadata: tuple[tuple[str, MetadataScalar], ...] = ()  # top-level fields, exact JSON equality


@dataclass(frozen=True, slots=True)
class OrgRecord:
    """An organisation: the unit of tenancy."""

    id: str
    name: str
    created_at_ns: int
    retention_days: int | None = None


@dataclass(frozen=True, slots=True)
class OrgStoreBinding:
    """An org bound to its own store; the URL is sealed (see ``storage.secrets``)."""

    org_id: str
    url_cipher: bytes
    url_nonce: bytes
    updated_at_ns: int


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as stored: only its digest, never the key."""

    id: int
    org_id: str
    name: str
    key_digest: str
    key_prefix: str
    permissions: frozenset[str]
    created_at_ns: int
    expires_at_ns: int | None = None


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """A registered agent. ``implicit`` agents were created on the fly by a session."""

    id: str
    org_id: str
    name: str
    created_at_ns: int
    description: str = ""
    config: dict[str, Any] | None = None
    implicit: bool = False
    last_active_at_ns: int | None = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session: a label that memories carry in ``session_id``."""

    id: str
    org_id: str
    agent_id: str
    created_at_ns: int
    updated_at_ns: int
    status: str = "active"
    metadata: dict[str, Any] | None = None
    closed_at_ns: int | None = None
    last_active_at_ns: int | None = None


@dataclass(frozen=True, slots=True)
class AgentStatsRecord:
    """Counts behind ``GET /agents/{id}/stats``."""

    memory_count: int = 0
    memories_24h: int = 0
    errors_24h: int = 0
    session_count: int = 0
    active_sessions: int = 0
    last_active_at_ns: int | None = None
    memory_types: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentDeletion:
    """What deleting an agent without cascade did; ``sessions`` refer to it when it stayed."""

    outcome: Literal["deleted", "absent", "has_sessions"]
    sessions: int = 0


@dataclass(frozen=True, slots=True)
class ConsoleSessionRecord:
    """A web console sign-in as stored: digests only, never the token or the API key."""

    token_digest: str
    org_id: str
    key_digest: str  # the API key that opened it, re-checked on every request
    csrf_token: str
    created_at_ns: int
    last_seen_at_ns: int
