"""Request and response models: a superset of memtrace-sdk 0.2.0's.

Request models accept what the server defaults (``memory_type``/``event_type`` may be
omitted). Response models ignore fields they do not know, so newer servers stay readable.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

MemoryType = Literal["episodic", "session", "decision", "entity"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Explanation(BaseModel):
    """Why a search returned a memory (``explain=True``):
    ``final_score = relevance x importance_factor x recency_factor``."""

    text_score: float | None = Field(None, description="BM25 score of the query's words.")
    semantic_similarity: float | None = Field(
        None, description="Hybrid mode: cosine similarity to the query."
    )
    relevance: float | None = Field(
        None, description="The text score, or in hybrid mode the fused (standardised) sum."
    )
    recency_factor: float = 1.0
    importance_factor: float = 1.0
    final_score: float | None = Field(None, description="What the result is ranked by.")


class Memory(BaseModel):
    """A stored memory event."""

    id: str | None = Field(None, description="mem_… id (None from servers that have none).")
    time: datetime
    org_id: str
    agent_id: str
    session_id: str | None = None
    memory_type: str
    event_type: str
    content: str
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    dedup_key: str | None = None
    importance: float | None = None
    parent_id: str | None = None
    expires_at: datetime | None = None
    score: float | None = Field(None, description="Relevance, in searches with a query.")
    key: str | None = Field(None, description="Its key, when it records a fact that can change.")
    superseded_by: str | None = Field(None, description="The version that replaced it.")
    superseded_at: datetime | None = Field(None, description="When it was replaced.")
    explanation: Explanation | None = Field(
        None, description="The score's components, in searches with explain=True."
    )


class AddMemoryRequest(_Request):
    """A memory to store. The server defaults ``memory_type`` and ``event_type``."""

    agent_id: str
    content: str
    session_id: str | None = None
    memory_type: MemoryType | None = None
    event_type: str | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    dedup_key: str | None = None
    importance: float | None = Field(default=None, ge=0, le=1)
    parent_id: str | None = None
    time: datetime | None = Field(None, description="Backfill time; server time when omitted.")
    expires_at: datetime | None = Field(None, description="When the memory expires.")
    ttl: str | None = Field(None, description="Lifetime instead of expires_at: 30m, 12h, 7d.")
    key: str | None = Field(
        None,
        description="A fact that can change: remembering again under the same key makes the "
        "new memory current and keeps the old one as history.",
    )

    @field_serializer("time", "expires_at")
    def _rfc3339(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class ListOptions(_Request):
    """Filters for listing memories (all optional)."""

    agent_id: str | None = None
    session_id: str | None = None
    memory_type: str | None = None
    event_type: str | None = None
    tags: str | None = Field(None, description="Comma-separated; a list is accepted too.")
    since: str | None = None
    until: str | None = None
    limit: int | None = None
    offset: int | None = None
    order: Literal["asc", "desc"] | None = None
    key: str | None = Field(None, description="Exactly this memory key.")
    include_superseded: bool | None = Field(None, description="Older versions of keys too.")
    metadata: dict[str, Any] | None = Field(
        None, description="Top-level metadata fields that must equal these values exactly."
    )

    @field_validator("tags", mode="before")
    @classmethod
    def _join_tags(cls, value: Any) -> Any:
        return ",".join(value) if isinstance(value, (list, tuple)) else value

    @field_serializer("metadata")
    def _metadata_json(self, value: dict[str, Any] | None) -> str | None:
        return json.dumps(value, separators=(",", ":")) if value is not None else None


class MemoryVersions(BaseModel):
    """Every version of a keyed memory, newest first (the current one has no
    ``superseded_by``)."""

    memories: list[Memory]
    count: int


class MemoryList(BaseModel):
    """A page of memories."""

    memories: list[Memory]
    count: int
    has_more: bool


class SearchQuery(_Request):
    """Structured search filters (all optional)."""

    agent_id: str | None = None
    session_id: str | None = None
    memory_types: list[str] | None = None
    event_types: list[str] | None = None
    tags: list[str] | None = None
    content_contains: str | None = None
    since: str | None = None
    until: str | None = None
    min_importance: float | None = None
    limit: int | None = None
    offset: int | None = None
    order: Literal["asc", "desc"] | None = None
    query: str | None = Field(None, description="Free text: results ranked by relevance.")
    mode: Literal["bm25", "hybrid"] | None = None
    recency_half_life: str | None = Field(
        None, description="With query: halve scores per this age."
    )
    importance_weight: float | None = Field(None, description="With query: weight of importance.")
    key: str | None = Field(None, description="Exactly this memory key.")
    include_superseded: bool | None = Field(None, description="Older versions of keys too.")
    metadata: dict[str, Any] | None = Field(
        None, description="Top-level metadata fields that must equal these values exactly."
    )
    explain: bool | None = Field(None, description="Give each result an explanation of its score.")


class EraseQuery(SearchQuery):
    """Filters of the memories to erase (at least one); ``dry_run`` only counts."""

    dry_run: bool | None = None


class EraseResult(BaseModel):
    """How many memories were erased (or would be, with ``dry_run``)."""

    deleted: int
    dry_run: bool


class SearchResult(BaseModel):
    """Search results; ``.memories`` is an alias of ``.results``."""

    results: list[Memory]
    count: int
    query_time_ms: int = 0
    mode: Literal["bm25", "hybrid"] | None = Field(
        None, description="How query ranked (when one was given)."
    )

    @property
    def memories(self) -> list[Memory]:
        """The results, under the name list endpoints use."""
        return self.results


class Agent(BaseModel):
    """A registered agent."""

    id: str
    org_id: str
    name: str
    description: str | None = None
    config: dict[str, Any] | None = None
    created_at: datetime
    last_active_at: datetime | None = None


class RegisterAgentRequest(_Request):
    """An agent to register."""

    name: str
    description: str | None = None
    config: dict[str, Any] | None = None


class AgentList(BaseModel):
    """Agents of your organisation."""

    agents: list[Agent]
    count: int


class AgentStats(BaseModel):
    """Memory statistics for an agent."""

    agent_id: str
    memory_count: int
    memories_24h: int
    errors_24h: int
    session_count: int
    active_sessions: int
    last_active_at: datetime | None = None
    memory_types: dict[str, int]


class Session(BaseModel):
    """A bounded context for agent work."""

    id: str
    org_id: str
    agent_id: str
    status: str
    metadata: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None
    last_active_at: datetime | None = None


class UpdateAgentRequest(_Request):
    """Changes to an agent: a new description, config keys to merge (None removes one)."""

    description: str | None = None
    config: dict[str, Any] | None = None


class SessionList(BaseModel):
    """Sessions of your organisation."""

    sessions: list[Session]
    count: int


class CreateSessionRequest(_Request):
    """A session to open; ``agent_id`` may be an agent id or name."""

    agent_id: str
    metadata: dict[str, Any] | None = None


class UpdateSessionRequest(_Request):
    """Changes to a session; metadata keys are merged (None removes a key)."""

    status: Literal["active", "closed"] | None = None
    metadata: dict[str, Any] | None = None


class ContextOptions(_Request):
    """Options for a session context."""

    max_tokens: int | None = None
    include_types: list[str] | None = None
    since: str | None = None
    query: str | None = Field(
        None, description="Free text: the most relevant memories fill the budget."
    )
    mode: Literal["bm25", "hybrid"] | None = Field(
        None, description="How query ranks; the server decides when omitted (hybrid if it can)."
    )


class SessionContext(BaseModel):
    """LLM-ready markdown for a session."""

    session_id: str
    context: str
    memory_count: int
    mode: Literal["bm25", "hybrid"] | None = Field(
        None, description="How query ranked (when one was given)."
    )


class AgentContext(BaseModel):
    """LLM-ready markdown of an agent's recent memories across its sessions."""

    agent_id: str
    context: str
    memory_count: int
    mode: Literal["bm25", "hybrid"] | None = Field(
        None, description="How query ranked (when one was given)."
    )
