"""The JSON Lines export format: one object per line, agents and sessions before memories.

Each line has ``"kind"`` (``agent``, ``session`` or ``memory``) and the same fields as the
API's objects, so a file is readable on its own and imports into any store unchanged.
"""

from __future__ import annotations

from typing import Any

import orjson

from memtrace_server.core.errors import BadRequest
from memtrace_server.core.records import AgentRecord, MemoryRecord, SessionRecord
from memtrace_server.core.timefmt import parse_timestamp
from memtrace_server.core.wire import agent_to_wire, memory_to_wire, session_to_wire


def export_line(record: AgentRecord | SessionRecord | MemoryRecord) -> bytes:
    """One JSON line (with its newline) for a record."""
    if isinstance(record, MemoryRecord):
        body: dict[str, Any] = {"kind": "memory", **memory_to_wire(record)}
    elif isinstance(record, SessionRecord):
        body = {"kind": "session", **session_to_wire(record)}
    else:
        body = {"kind": "agent", **agent_to_wire(record), "implicit": record.implicit}
    return orjson.dumps(body) + b"\n"


def _time(value: Any, field: str, required: bool = True) -> int | None:
    if value is None and not required:
        return None
    parsed = parse_timestamp(value) if isinstance(value, str) else None
    if parsed is None:
        raise BadRequest(f"invalid {field} {value!r}")
    return parsed


def parse_line(line: bytes | str, org_id: str) -> AgentRecord | SessionRecord | MemoryRecord | None:
    """The record of an export line, re-homed to ``org_id``; None for a blank line."""
    if not line.strip():
        return None
    try:
        data = orjson.loads(line)
        kind = data["kind"]
        if kind == "memory":
            return MemoryRecord(
                id=data["id"],
                org_id=org_id,
                agent_id=data["agent_id"],
                content=data["content"],
                time_ns=_time(data["time"], "time") or 0,
                memory_type=data["memory_type"],
                event_type=data["event_type"],
                session_id=data.get("session_id", ""),
                metadata=data.get("metadata"),
                tags=tuple(data.get("tags") or ()),
                dedup_key=data.get("dedup_key", ""),
                importance=float(data.get("importance", 0)),
                parent_id=data.get("parent_id", ""),
                expires_at_ns=_time(data.get("expires_at"), "expires_at", required=False),
                key=str(data.get("key", "")),
                superseded_by=str(data.get("superseded_by", "")),
                superseded_at_ns=_time(data.get("superseded_at"), "superseded_at", required=False),
            )
        if kind == "session":
            return SessionRecord(
                id=data["id"],
                org_id=org_id,
                agent_id=data["agent_id"],
                status=data["status"],
                metadata=data.get("metadata"),
                created_at_ns=_time(data["created_at"], "created_at") or 0,
                updated_at_ns=_time(data["updated_at"], "updated_at") or 0,
                closed_at_ns=_time(data.get("closed_at"), "closed_at", required=False),
                last_active_at_ns=_time(
                    data.get("last_active_at"), "last_active_at", required=False
                ),
            )
        if kind == "agent":
            return AgentRecord(
                id=data["id"],
                org_id=org_id,
                name=data["name"],
                description=data.get("description", ""),
                config=data.get("config"),
                implicit=bool(data.get("implicit", False)),
                created_at_ns=_time(data["created_at"], "created_at") or 0,
                last_active_at_ns=_time(
                    data.get("last_active_at"), "last_active_at", required=False
                ),
            )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BadRequest(f"invalid export line: {exc}") from exc
    raise BadRequest(f"invalid export line: unknown kind {data.get('kind')!r}")
