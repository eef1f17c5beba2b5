"""Response shapes, for the OpenAPI document only (handlers build JSON directly)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    """Every error body."""

    error: str = Field(description="What went wrong.")
    hint: str | None = Field(None, description="What to do about it, when known.")


class MemoryOut(BaseModel):
    """A stored memory. Empty optional fields are omitted."""

    id: str = Field(description="mem_… id, sortable by time.")
    time: str = Field(description="RFC 3339 UTC time with up to nanoseconds.")
    org_id: str
    agent_id: str
    session_id: str | None = None
    memory_type: Literal["episodic", "session", "decision", "entity"]
    event_type: str
    content: str
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    dedup_key: str | None = None
    importance: float | None = None
    parent_id: str | None = None
    expires_at: str | None = Field(None, description="When it expires, if it does.")
    key: str | None = Field(None, description="Its key, when it records a fact that can change.")
    superseded_by: str | None = Field(
        None, description="The id of the version that replaced it (history only)."
    )
    superseded_at: str | None = Field(None, description="When it was replaced (history only).")
    score: float | None = Field(None, description="Relevance, in searches with a query.")


class MemoryBatchOut(BaseModel):
    """Result of a batch create: the memories stored (duplicates skipped)."""

    memories: list[MemoryOut]
    count: int


class MemoryVersionsOut(BaseModel):
    """The versions of a keyed memory, newest first."""

    memories: list[MemoryOut]
    count: int


class MemoryListOut(BaseModel):
    """A page of memories."""

    memories: list[MemoryOut]
    count: int
    has_more: bool = Field(description="True when more memories match beyond this page.")


class EraseOut(BaseModel):
    """Result of an erase by filter."""

    deleted: int = Field(description="Memories erased (or, with dry_run, that would be).")
    dry_run: bool


class ExplanationOut(BaseModel):
    """Why a search returned a memory: ``final_score = relevance x importance_factor x
    recency_factor``. Scores are null when the search had no query (time order)."""

    text_score: float | None = Field(description="BM25 score of the query's words.")
    semantic_similarity: float | None = Field(
        None,
        description="Hybrid mode only: cosine similarity to the query (null if not embedded yet).",
    )
    relevance: float | None = Field(
        description="The text score; in hybrid mode the standardised text score plus the "
        "standardised similarity."
    )
    recency_factor: float = Field(description="0.5 per recency_half_life of age; 1 without it.")
    importance_factor: float = Field(description="1 + importance_weight x importance.")
    final_score: float | None = Field(description="The score the result is ranked by.")


class SearchResultOut(MemoryOut):
    """A search result; ``explanation`` only when the search asked for it."""

    explanation: ExplanationOut | None = Field(
        None, description='With "explain": true, the components of the score.'
    )


class SearchOut(BaseModel):
    """Search results."""

    results: list[SearchResultOut]
    count: int
    query_time_ms: int
    mode: Literal["bm25", "hybrid"] | None = Field(
        None, description="How query ranked the results (only when the request had a query)."
    )


class AgentOut(BaseModel):
    """A registered agent."""

    id: str
    org_id: str
    name: str
    description: str | None = None
    config: dict[str, Any] | None = None
    created_at: str
    last_active_at: str | None = None


class AgentListOut(BaseModel):
    """Agents of the caller's org."""

    agents: list[AgentOut]
    count: int


class AgentStatsOut(BaseModel):
    """Counts for one agent id."""

    agent_id: str
    memory_count: int
    memories_24h: int
    errors_24h: int
    session_count: int
    active_sessions: int
    last_active_at: str | None = None
    memory_types: dict[str, int]


class SessionOut(BaseModel):
    """A session."""

    id: str
    org_id: str
    agent_id: str
    status: str
    metadata: dict[str, Any] | None = None
    created_at: str
    updated_at: str
    closed_at: str | None = None
    last_active_at: str | None = None


class SessionListOut(BaseModel):
    """Sessions of the caller's org."""

    sessions: list[SessionOut]
    count: int


class ContextOut(BaseModel):
    """LLM-ready markdown of a session's recent memories."""

    session_id: str
    context: str
    memory_count: int
    mode: Literal["bm25", "hybrid"] | None = Field(
        None, description="How query ranked the results (only when the request had a query)."
    )


class AgentContextOut(BaseModel):
    """LLM-ready markdown of an agent's recent memories across its sessions."""

    agent_id: str
    context: str
    memory_count: int
    mode: Literal["bm25", "hybrid"] | None = Field(
        None, description="How query ranked the results (only when the request had a query)."
    )


class HealthOut(BaseModel):
    """Liveness."""

    status: str
    service: str
    version: str
    uptime: str


class ReadyOut(BaseModel):
    """Readiness: whether the store answers."""

    status: str
    store: str


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error statuses."""
    text = {
        400: "Malformed input",
        401: "Missing or invalid API key",
        403: "The key lacks the permission",
        404: "Not found in this organisation",
        409: "Duplicate",
        413: "Body, batch, content or metadata too large",
        429: "Rate limit exceeded (see Retry-After)",
        503: "Store unavailable",
        507: "Store full: nothing was written",
    }
    if 401 in codes:  # every authenticated route can also be rate limited
        codes = (*codes, 429)
    if 503 in codes:
        codes = (*codes, 507)
    return {code: {"model": ErrorOut, "description": text[code]} for code in codes}
