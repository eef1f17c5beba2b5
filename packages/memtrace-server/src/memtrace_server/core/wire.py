"""Records rendered as the reference's JSON objects (empty fields omitted)."""

from __future__ import annotations

from typing import Any

from memtrace_server.core.records import (
    AgentRecord,
    AgentStatsRecord,
    MemoryRecord,
    SessionRecord,
)
from memtrace_server.core.timefmt import format_rfc3339


def memory_to_wire(m: MemoryRecord) -> dict[str, Any]:
    """A memory as JSON, with the reference's field order and omitted empties, plus ``id``."""
    out: dict[str, Any] = {
        "id": m.id,
        "time": format_rfc3339(m.time_ns),
        "org_id": m.org_id,
        "agent_id": m.agent_id,
    }
    if m.session_id:
        out["session_id"] = m.session_id
    out["memory_type"] = m.memory_type
    out["event_type"] = m.event_type
    out["content"] = m.content
    if m.metadata:
        out["metadata"] = m.metadata
    if m.tags:
        out["tags"] = list(m.tags)
    if m.dedup_key:
        out["dedup_key"] = m.dedup_key
    if m.importance:
        out["importance"] = m.importance
    if m.parent_id:
        out["parent_id"] = m.parent_id
    if m.expires_at_ns is not None:
        out["expires_at"] = format_rfc3339(m.expires_at_ns)
    if m.key:
        out["key"] = m.key
    if m.superseded_by:
        out["superseded_by"] = m.superseded_by
    if m.superseded_at_ns is not None:
        out["superseded_at"] = format_rfc3339(m.superseded_at_ns)
    if m.score is not None:
        out["score"] = round(m.score, 6)
    return out


def agent_to_wire(a: AgentRecord) -> dict[str, Any]:
    """An agent as JSON (``description``/``config``/``last_active_at`` omitted when empty)."""
    out: dict[str, Any] = {"id": a.id, "org_id": a.org_id, "name": a.name}
    if a.description:
        out["description"] = a.description
    if a.config:
        out["config"] = a.config
    out["created_at"] = format_rfc3339(a.created_at_ns)
    if a.last_active_at_ns is not None:
        out["last_active_at"] = format_rfc3339(a.last_active_at_ns)
    return out


def session_to_wire(s: SessionRecord) -> dict[str, Any]:
    """A session as JSON (``metadata``/``closed_at`` omitted when empty)."""
    out: dict[str, Any] = {
        "id": s.id,
        "org_id": s.org_id,
        "agent_id": s.agent_id,
        "status": s.status,
    }
    if s.metadata:
        out["metadata"] = s.metadata
    out["created_at"] = format_rfc3339(s.created_at_ns)
    out["updated_at"] = format_rfc3339(s.updated_at_ns)
    if s.closed_at_ns is not None:
        out["closed_at"] = format_rfc3339(s.closed_at_ns)
    if s.last_active_at_ns is not None:
        out["last_active_at"] = format_rfc3339(s.last_active_at_ns)
    return out


def stats_to_wire(agent_id: str, s: AgentStatsRecord) -> dict[str, Any]:
    """Agent stats as JSON."""
    out: dict[str, Any] = {
        "agent_id": agent_id,
        "memory_count": s.memory_count,
        "memories_24h": s.memories_24h,
        "errors_24h": s.errors_24h,
        "session_count": s.session_count,
        "active_sessions": s.active_sessions,
    }
    if s.last_active_at_ns is not None:
        out["last_active_at"] = format_rfc3339(s.last_active_at_ns)
    out["memory_types"] = s.memory_types
    return out
