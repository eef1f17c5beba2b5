"""Domain rules applied to stored records: pure functions, "now" passed in.

The stores apply them inside their transactions where atomicity needs it, so both
backends follow one rule instead of each restating it in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from memtrace_server.core.records import AgentRecord, MemoryBatch, MemoryRecord, SessionRecord

DAY_NS = 86_400 * 1_000_000_000


def merge_metadata(current: dict[str, Any] | None, patch: dict[str, Any] | None) -> dict[str, Any]:
    """``current`` with ``patch`` applied: keys set, or removed where the value is None."""
    merged = dict(current or {})
    for key, value in (patch or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def updated_session(
    current: SessionRecord, status: str | None, metadata_patch: dict[str, Any] | None, now_ns: int
) -> SessionRecord:
    """A session after a status change and a metadata merge.

    Closing stamps ``closed_at``; reopening clears it; no status keeps both as they are.
    """
    closed_at = current.closed_at_ns
    if status == "closed":
        closed_at = now_ns
    elif status == "active":
        closed_at = None
    return replace(
        current,
        status=status or current.status,
        metadata=merge_metadata(current.metadata, metadata_patch),
        updated_at_ns=now_ns,
        closed_at_ns=closed_at,
    )


def updated_agent(
    current: AgentRecord, description: str | None, config_patch: dict[str, Any] | None
) -> AgentRecord:
    """An agent with a new description (when given) and its config merged."""
    return replace(
        current,
        description=current.description if description is None else description,
        config=merge_metadata(current.config, config_patch),
    )


def adopted_agent(existing: AgentRecord, registered: AgentRecord) -> AgentRecord | None:
    """The agent a registration turns ``existing`` (same name) into, or None if the name is
    taken: an implicit agent (created on the fly by a session) is adopted, keeping its id."""
    if not existing.implicit:
        return None
    return replace(
        existing, description=registered.description, config=registered.config, implicit=False
    )


def stats_window_start(now_ns: int) -> int:
    """Where the "last 24 hours" of agent stats begin."""
    return now_ns - DAY_NS


def latest_activity(memories: Sequence[MemoryRecord]) -> dict[tuple[str, str], int]:
    """The newest memory time per ("agents" | "sessions", id) the memories belong to."""
    latest: dict[tuple[str, str], int] = {}
    for m in memories:
        for kind, ref in (("agents", m.agent_id), ("sessions", m.session_id)):
            if ref:
                latest[(kind, ref)] = max(latest.get((kind, ref), 0), m.time_ns)
    return latest


def fresh_memories(
    batches: Sequence[MemoryBatch], stored: dict[str, list[tuple[int, int | None]]]
) -> list[list[bool]]:
    """Which memories of each batch (all of one org) are not duplicates, the batches applied
    one after another.

    In a batch with a window, a memory is a duplicate when another with its dedup key and a
    time within the window of its time is already there: stored (``stored``: (time, expiry)
    by dedup key) or written by an earlier batch, and unexpired at the batch's now; or
    earlier in the same batch. Memories of a batch without a window are all stored, and
    count as there for the batches after it.
    """
    seen: dict[str, list[tuple[int, int | None, int]]] = {
        key: [(when, expires, -1) for when, expires in entries] for key, entries in stored.items()
    }
    out: list[list[bool]] = []
    for index, batch in enumerate(batches):
        window, now = batch.dedup_window_ns, batch.now_ns
        fresh: list[bool] = []
        for m in batch.memories:
            if not m.dedup_key:
                fresh.append(True)
                continue
            entries = seen.setdefault(m.dedup_key, [])
            if window is not None and any(
                abs(when - m.time_ns) < window
                and (source == index or expires is None or expires > now)
                for when, expires, source in entries
            ):
                fresh.append(False)
                continue
            entries.append((m.time_ns, m.expires_at_ns, index))
            fresh.append(True)
        out.append(fresh)
    return out
