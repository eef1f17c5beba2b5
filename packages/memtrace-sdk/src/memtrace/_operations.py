"""Every API operation, once, as a function that returns a ``Call``.

The sync and async clients turn these into methods; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from memtrace._base import Call, body, coerce, path_id
from memtrace.models import (
    AddMemoryRequest,
    Agent,
    AgentContext,
    AgentList,
    AgentStats,
    ContextOptions,
    CreateSessionRequest,
    EraseQuery,
    EraseResult,
    ListOptions,
    Memory,
    MemoryList,
    MemoryVersions,
    RegisterAgentRequest,
    SearchQuery,
    SearchResult,
    Session,
    SessionContext,
    SessionList,
    UpdateAgentRequest,
    UpdateSessionRequest,
)

V1 = "/api/v1"
AddMemoryLike = AddMemoryRequest | Mapping[str, Any]


def add_memory(req: AddMemoryLike) -> Call[Memory]:
    """Store one memory; ``ConflictError`` (409) if it duplicates a recent one.

    Accepts an ``AddMemoryRequest`` or a plain dict; ``memory_type`` defaults to
    ``episodic`` and ``event_type`` to ``general`` on the server.
    """
    model = coerce(AddMemoryRequest, req)
    recover = get_memory(model.dedup_key) if model.dedup_key else None
    return Call(
        "POST",
        f"{V1}/memories",
        Memory.model_validate,
        json=body(model),
        retry_safe=bool(model.dedup_key),
        on_retried_conflict=recover,
    )


def remember(
    agent_id: str,
    content: str,
    *,
    session_id: str | None = None,
    tags: list[str] | None = None,
    importance: float | None = None,
    metadata: dict[str, Any] | None = None,
    event_type: str | None = None,
    memory_type: str | None = None,
    key: str | None = None,
) -> Call[Memory]:
    """Store an episodic memory (or another type) for an agent.

    With ``key``, the memory records a fact that can change (a preference, a status, a
    plan): remembering under the same key later makes the new one current, the old one
    history.
    """
    return add_memory(
        {
            "agent_id": agent_id,
            "content": content,
            "session_id": session_id,
            "tags": tags,
            "importance": importance,
            "metadata": metadata,
            "event_type": event_type,
            "memory_type": memory_type,
            "key": key,
        }
    )


def decide(
    agent_id: str,
    decision: str,
    reasoning: str,
    *,
    session_id: str | None = None,
    tags: list[str] | None = None,
    importance: float | None = None,
) -> Call[Memory]:
    """Log a decision with its reasoning (memory and event type ``decision``)."""
    return add_memory(
        {
            "agent_id": agent_id,
            "content": decision,
            "memory_type": "decision",
            "event_type": "decision",
            "metadata": {"reasoning": reasoning},
            "session_id": session_id,
            "tags": tags,
            "importance": importance,
        }
    )


def add_memories(memories: Sequence[AddMemoryLike]) -> Call[list[Memory]]:
    """Store a batch at once; duplicates are skipped and the stored ones returned."""
    payload = {"memories": [body(coerce(AddMemoryRequest, m)) for m in memories]}

    def parse(data: Any) -> list[Memory]:
        return [Memory.model_validate(m) for m in data["memories"]]

    return Call("POST", f"{V1}/memories", parse, json=payload, retry_safe=False)


def get_memory(memory_id: str) -> Call[Memory]:
    """One memory by its id (or its dedup key)."""
    return Call("GET", f"{V1}/memories/{path_id(memory_id)}", Memory.model_validate)


def memory_versions(memory_id: str) -> Call[MemoryVersions]:
    """Every version of a memory's key, newest first (a memory without a key: itself)."""
    path = f"{V1}/memories/{path_id(memory_id)}/versions"
    return Call("GET", path, MemoryVersions.model_validate)


def list_memories(
    opts: ListOptions | Mapping[str, Any] | None = None, **filters: Any
) -> Call[MemoryList]:
    """Memories matching filters, newest first; a ``ListOptions``, a dict or keywords."""
    params = body(coerce(ListOptions, opts, **filters))
    return Call("GET", f"{V1}/memories", MemoryList.model_validate, params=params)


def recall(
    agent_id: str, since: str = "24h", *, session_id: str | None = None, limit: int = 100
) -> Call[MemoryList]:
    """An agent's recent memories, newest first."""
    return list_memories(
        ListOptions(
            agent_id=agent_id, since=since, session_id=session_id, limit=limit, order="desc"
        )
    )


def search_memories(
    query: SearchQuery | Mapping[str, Any] | str | None = None, **filters: Any
) -> Call[SearchResult]:
    """Search with a ``SearchQuery``, a dict (None values ignored) or keywords.

    A plain string is the free-text ``query``: ``search_memories("dark mode", agent_id="a")``
    or ``search_memories(query="dark mode")`` rank results by relevance.
    """
    if isinstance(query, str):
        filters["query"] = query
        query = None
    model = coerce(SearchQuery, _drop_none(query), **filters)
    return Call("POST", f"{V1}/search", SearchResult.model_validate, json=body(model))


def register_agent(req: RegisterAgentRequest | Mapping[str, Any]) -> Call[Agent]:
    """Register an agent; ``ConflictError`` if the name is taken."""
    model = coerce(RegisterAgentRequest, req)
    return Call("POST", f"{V1}/agents", Agent.model_validate, json=body(model), retry_safe=False)


def list_agents() -> Call[AgentList]:
    """All agents of your organisation."""
    return Call("GET", f"{V1}/agents", AgentList.model_validate)


def get_agent(agent_id: str) -> Call[Agent]:
    """An agent by id or name."""
    return Call("GET", f"{V1}/agents/{path_id(agent_id)}", Agent.model_validate)


def get_agent_stats(agent_id: str) -> Call[AgentStats]:
    """Memory and session counts for an agent id."""
    return Call("GET", f"{V1}/agents/{path_id(agent_id)}/stats", AgentStats.model_validate)


def get_agent_memories(
    agent_id: str, opts: ListOptions | Mapping[str, Any] | None = None
) -> Call[MemoryList]:
    """An agent's memories (last 24 hours unless ``since`` says otherwise)."""
    params = body(coerce(ListOptions, opts))
    params.pop("agent_id", None)
    return Call(
        "GET", f"{V1}/agents/{path_id(agent_id)}/memories", MemoryList.model_validate, params=params
    )


def get_agent_context(
    agent_id: str, opts: ContextOptions | Mapping[str, Any] | None = None
) -> Call[AgentContext]:
    """LLM-ready markdown of an agent's recent memories across all its sessions."""
    model = coerce(ContextOptions, opts)
    return Call(
        "POST",
        f"{V1}/agents/{path_id(agent_id)}/context",
        AgentContext.model_validate,
        json=body(model),
    )


def delete_agent(agent_id: str, *, cascade: bool = False) -> Call[None]:
    """Delete an agent; with ``cascade`` also its sessions and all its memories."""
    return Call(
        "DELETE",
        f"{V1}/agents/{path_id(agent_id)}",
        lambda _: None,
        params={"cascade": "true"} if cascade else None,
        retry_safe=False,
    )


def update_agent(agent_id: str, req: UpdateAgentRequest | Mapping[str, Any]) -> Call[Agent]:
    """Change an agent's description and merge keys into its config."""
    model = coerce(UpdateAgentRequest, req)
    return Call("PATCH", f"{V1}/agents/{path_id(agent_id)}", Agent.model_validate, json=body(model))


def delete_memory(memory_id: str) -> Call[None]:
    """Erase one memory by id. Permanent."""
    return Call("DELETE", f"{V1}/memories/{path_id(memory_id)}", lambda _: None, retry_safe=False)


def erase_memories(
    query: EraseQuery | Mapping[str, Any] | None = None, **filters: Any
) -> Call[EraseResult]:
    """Erase every memory matching the filters (at least one); ``dry_run=True`` only counts."""
    model = coerce(EraseQuery, _drop_none(query), **filters)
    return Call(
        "POST",
        f"{V1}/memories/delete",
        EraseResult.model_validate,
        json=body(model),
        retry_safe=True,
    )


def delete_session(session_id: str, *, cascade: bool = False) -> Call[None]:
    """Delete a session; with ``cascade`` also the memories carrying its id."""
    return Call(
        "DELETE",
        f"{V1}/sessions/{path_id(session_id)}",
        lambda _: None,
        params={"cascade": "true"} if cascade else None,
        retry_safe=False,
    )


def create_session(req: CreateSessionRequest | Mapping[str, Any]) -> Call[Session]:
    """Open a session for an agent id or name."""
    model = coerce(CreateSessionRequest, req)
    return Call(
        "POST", f"{V1}/sessions", Session.model_validate, json=body(model), retry_safe=False
    )


def get_session(session_id: str) -> Call[Session]:
    """One session."""
    return Call("GET", f"{V1}/sessions/{path_id(session_id)}", Session.model_validate)


def list_sessions(agent_id: str | None = None) -> Call[SessionList]:
    """Sessions, newest first, optionally of one agent."""
    return Call("GET", f"{V1}/sessions", SessionList.model_validate, params={"agent_id": agent_id})


def update_session(session_id: str, req: UpdateSessionRequest | Mapping[str, Any]) -> Call[Session]:
    """Change a session's status and merge metadata."""
    model = coerce(UpdateSessionRequest, req)
    return Call(
        "PUT", f"{V1}/sessions/{path_id(session_id)}", Session.model_validate, json=body(model)
    )


def close_session(session_id: str) -> Call[Session]:
    """Mark a session closed."""
    return update_session(session_id, UpdateSessionRequest(status="closed"))


def get_session_context(
    session_id: str, opts: ContextOptions | Mapping[str, Any] | None = None
) -> Call[SessionContext]:
    """LLM-ready markdown of a session's recent memories."""
    model = coerce(ContextOptions, opts)
    return Call(
        "POST",
        f"{V1}/sessions/{path_id(session_id)}/context",
        SessionContext.model_validate,
        json=body(model),
    )


def get_session_memories(
    session_id: str, opts: ListOptions | Mapping[str, Any] | None = None
) -> Call[MemoryList]:
    """Memories carrying this session id, newest first."""
    params = body(coerce(ListOptions, opts))
    params.pop("session_id", None)
    return Call(
        "GET",
        f"{V1}/sessions/{path_id(session_id)}/memories",
        MemoryList.model_validate,
        params=params,
    )


def _drop_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if v is not None}
    return value
