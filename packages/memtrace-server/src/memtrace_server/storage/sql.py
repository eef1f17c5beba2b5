"""SQL shapes shared by the SQL backends: columns, row mapping, the memory filter.

Both backends keep the same tables and column order; they differ in placeholders and
in how tags are stored (a side table in SQLite, an array in PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from memtrace_server.core.records import (
    AgentRecord,
    ApiKeyRecord,
    MemoryFilter,
    MemoryRecord,
    OrgRecord,
    SessionRecord,
)

MEMORY_COLUMNS = (
    "m.id, m.org_id, m.agent_id, m.session_id, m.memory_type, m.event_type, m.content, "
    "m.metadata_json, m.tags, m.dedup_key, m.importance, m.parent_id, m.time, m.expires_at"
)
ORG_COLUMNS = "id, name, created_at, retention_days"
AGENT_COLUMNS = "org_id, id, name, description, config_json, implicit, created_at, last_active_at"
SESSION_COLUMNS = (
    "org_id, id, agent_id, status, metadata_json, created_at, updated_at, closed_at, last_active_at"
)
KEY_COLUMNS = "id, org_id, name, key_digest, key_prefix, permissions, created_at, expires_at"
ORG_TABLES = ("api_keys", "agents", "sessions", "memories")


def dump_json(value: dict[str, Any] | None) -> str | None:
    """JSON text of a non-empty object, else None."""
    return orjson.dumps(value).decode() if value else None


def session_values(org_id: str, session: SessionRecord) -> tuple[Any, ...]:
    """A session's values in ``SESSION_COLUMNS`` order (both backends)."""
    return (
        org_id,
        session.id,
        session.agent_id,
        session.status,
        dump_json(session.metadata) or "{}",
        session.created_at_ns,
        session.updated_at_ns,
        session.closed_at_ns,
        session.last_active_at_ns,
    )


def memory_values(org_id: str, m: MemoryRecord, tags: Any) -> tuple[Any, ...]:
    """A memory's values for ``(id, org_id, agent_id, session_id, memory_type, event_type,
    content, metadata_json, tags, dedup_key, importance, parent_id, time, expires_at)``;
    ``tags`` as the backend stores them."""
    return (
        m.id,
        org_id,
        m.agent_id,
        m.session_id,
        m.memory_type,
        m.event_type,
        m.content,
        dump_json(m.metadata),
        tags,
        m.dedup_key,
        m.importance,
        m.parent_id,
        m.time_ns,
        m.expires_at_ns,
    )


def load_json(text: str | None) -> Any:
    """The object stored as JSON text (None for NULL or empty)."""
    return orjson.loads(text) if text else None


def memory_from_row(row: Sequence[Any], tags: Callable[[Any], tuple[str, ...]]) -> MemoryRecord:
    """A memory from a row of ``MEMORY_COLUMNS``; ``tags`` decodes the backend's tag value."""
    return MemoryRecord(
        id=row[0],
        org_id=row[1],
        agent_id=row[2],
        session_id=row[3],
        memory_type=row[4],
        event_type=row[5],
        content=row[6],
        metadata=load_json(row[7]),
        tags=tags(row[8]),
        dedup_key=row[9],
        importance=row[10],
        parent_id=row[11],
        time_ns=row[12],
        expires_at_ns=row[13],
    )


def org_from_row(row: Sequence[Any]) -> OrgRecord:
    """An org from a row of ``ORG_COLUMNS``."""
    return OrgRecord(id=row[0], name=row[1], created_at_ns=row[2], retention_days=row[3])


def agent_from_row(row: Sequence[Any]) -> AgentRecord:
    """An agent from a row of ``AGENT_COLUMNS``."""
    return AgentRecord(
        org_id=row[0],
        id=row[1],
        name=row[2],
        description=row[3],
        config=load_json(row[4]),
        implicit=bool(row[5]),
        created_at_ns=row[6],
        last_active_at_ns=row[7],
    )


def session_from_row(row: Sequence[Any]) -> SessionRecord:
    """A session from a row of ``SESSION_COLUMNS``."""
    return SessionRecord(
        org_id=row[0],
        id=row[1],
        agent_id=row[2],
        status=row[3],
        metadata=load_json(row[4]),
        created_at_ns=row[5],
        updated_at_ns=row[6],
        closed_at_ns=row[7],
        last_active_at_ns=row[8],
    )


def key_from_row(row: Sequence[Any]) -> ApiKeyRecord:
    """An API key from a row of ``KEY_COLUMNS``."""
    return ApiKeyRecord(
        id=row[0],
        org_id=row[1],
        name=row[2],
        key_digest=row[3],
        key_prefix=row[4],
        permissions=frozenset(p for p in row[5].split(",") if p),
        created_at_ns=row[6],
        expires_at_ns=row[7],
    )


def merge_metadata(current: dict[str, Any] | None, patch: dict[str, Any] | None) -> dict[str, Any]:
    """``current`` with ``patch`` applied: keys set, or removed where the value is None."""
    merged = dict(current or {})
    for key, value in (patch or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Dialect:
    """What differs between backends when filtering memories."""

    placeholder: str
    substring_function: str  # position of the needle in the haystack, 0 when absent
    tags_clause: Callable[[str, MemoryFilter], tuple[list[str], list[Any]]]


def memory_filter_sql(org_id: str, flt: MemoryFilter, dialect: Dialect) -> tuple[str, list[Any]]:
    """WHERE clause (without the keyword) and parameters for a memory filter."""
    p = dialect.placeholder
    where = [f"m.org_id = {p}"]
    params: list[Any] = [org_id]
    if flt.agent_id is not None:
        where.append(f"m.agent_id = {p}")
        params.append(flt.agent_id)
    if flt.session_id is not None:
        where.append(f"m.session_id = {p}")
        params.append(flt.session_id)
    for column, values in (("memory_type", flt.memory_types), ("event_type", flt.event_types)):
        if values:
            where.append(f"m.{column} IN ({','.join([p] * len(values))})")
            params.extend(values)
    if flt.since_ns is not None:
        where.append(f"m.time > {p}")
        params.append(flt.since_ns)
    if flt.until_ns is not None:
        where.append(f"m.time < {p}")
        params.append(flt.until_ns)
    if flt.tags:
        clauses, tag_params = dialect.tags_clause(org_id, flt)
        where.extend(clauses)
        params.extend(tag_params)
    if flt.content_contains:
        where.append(f"{dialect.substring_function}(m.content, {p}) > 0")
        params.append(flt.content_contains)
    if flt.min_importance is not None:
        where.append(f"m.importance >= {p}")
        params.append(flt.min_importance)
    if flt.visible_at_ns is not None:
        where.append(f"(m.expires_at IS NULL OR m.expires_at > {p})")
        params.append(flt.visible_at_ns)
    return " AND ".join(where), params


def order_limit_sql(flt: MemoryFilter, placeholder: str) -> tuple[str, list[Any]]:
    """ORDER BY time (ties by insertion) with LIMIT/OFFSET."""
    direction = "ASC" if flt.ascending else "DESC"
    return (
        f" ORDER BY m.time {direction}, m.rid {direction} LIMIT {placeholder} OFFSET {placeholder}",
        [flt.limit, flt.offset],
    )
