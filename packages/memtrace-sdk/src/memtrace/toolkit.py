"""Model-friendly text for tool results, shared by every Memtrace tool integration.

Results are compact JSON: ids, times and contents, no null noise.
"""

from __future__ import annotations

import json
from typing import Any

from memtrace.exceptions import MemtraceError
from memtrace.models import Memory, MemoryList, SearchResult


def to_json(value: Any) -> str:
    """Compact JSON, non-ASCII kept readable."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def compact_memory(m: Memory) -> dict[str, Any]:
    """The fields a model needs from a memory."""
    out: dict[str, Any] = {"id": m.id, "time": m.time.isoformat(), "type": m.memory_type}
    out["content"] = m.content
    if m.tags:
        out["tags"] = m.tags
    if m.importance:
        out["importance"] = m.importance
    if m.session_id:
        out["session_id"] = m.session_id
    if m.metadata and "reasoning" in m.metadata:
        out["reasoning"] = m.metadata["reasoning"]
    return out


def stored_text(m: Memory) -> str:
    """Result of a remember call."""
    return to_json({"stored": True, "id": m.id, "time": m.time.isoformat()})


def logged_text(m: Memory) -> str:
    """Result of a decide call."""
    return to_json({"logged": True, "id": m.id, "time": m.time.isoformat()})


def list_text(result: MemoryList | SearchResult) -> str:
    """Result of a recall or search call."""
    items = [compact_memory(m) for m in result.memories]
    return to_json({"count": len(items), "memories": items})


DUPLICATE_TEXT = to_json(
    {"stored": False, "duplicate": True, "note": "an identical memory was stored recently"}
)


def error_text(error: MemtraceError) -> str:
    """An error the model can read and act on."""
    return to_json({"error": error.message, "status": error.status_code})
