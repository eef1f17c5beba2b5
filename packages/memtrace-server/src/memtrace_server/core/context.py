"""Session context: the reference's markdown layout, with an honoured token budget."""

from __future__ import annotations

import math
from collections.abc import Sequence

from memtrace_server.core.records import MemoryRecord
from memtrace_server.core.timefmt import format_rfc3339

HINT_BYTES = 80
CONTEXT_ROW_LIMIT = 100


def estimate_tokens(text: str) -> int:
    """Token estimate used for ``max_tokens``: one token per four characters, rounded up.

    It is deliberately simple and model-independent; for English text it errs on the
    generous side of real tokenisers (which average about four characters a token).
    """
    return math.ceil(len(text) / 4)


def _hint(content: str) -> str:
    raw = content.encode("utf-8")
    if len(raw) <= HINT_BYTES:
        return content
    cut = raw[:HINT_BYTES]
    # Like Go's JSON encoder, every byte of a character cut in half becomes U+FFFD.
    for keep in range(len(cut), max(len(cut) - 4, 0) - 1, -1):
        try:
            text = cut[:keep].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return text + "\ufffd" * (len(cut) - keep) + "..."
    return cut.decode("utf-8", errors="replace") + "..."


def _line(m: MemoryRecord) -> str:
    return f"- [{format_rfc3339(m.time_ns)}] {m.event_type}: {_hint(m.content)}"


def _bucket(m: MemoryRecord) -> int:
    if m.memory_type == "episodic":
        return 0
    if m.memory_type == "decision":
        return 1
    if m.memory_type == "entity":
        return 3
    return 2 if m.event_type == "error" else 3


_TITLES = ("Recent Actions", "Decisions Made", "Errors", "Other")


def _render(title: str, rows: Sequence[MemoryRecord]) -> str:
    sections: list[list[str]] = [[], [], [], []]
    for m in rows:
        sections[_bucket(m)].append(_line(m))
    parts = [f"## {title}\n\n"]
    for index, lines in enumerate(sections):
        if not lines:
            continue
        parts.append(f"### {_TITLES[index]} ({len(lines)})\n")
        parts.append("".join(line + "\n" for line in lines))
        if index < 3:
            parts.append("\n")
    return "".join(parts)


def render_context(
    title: str, rows: Sequence[MemoryRecord], max_tokens: int | None = None
) -> tuple[str, int]:
    """Render ``rows`` (newest first) under ``## <title>``; return the text and rows used.

    With ``max_tokens``, the oldest rows are dropped until ``estimate_tokens`` of the text
    fits; if not even the header fits, the header alone is returned.
    """
    text = _render(title, rows)
    if not max_tokens or estimate_tokens(text) <= max_tokens:
        return text, len(rows)
    low, high = 0, len(rows) - 1  # the largest kept count that fits lies in [low, high]
    while low < high:
        mid = (low + high + 1) // 2
        if estimate_tokens(_render(title, rows[:mid])) <= max_tokens:
            low = mid
        else:
            high = mid - 1
    return _render(title, rows[:low]), low


def render_session_context(
    session_id: str, rows: Sequence[MemoryRecord], max_tokens: int | None = None
) -> tuple[str, int]:
    """The reference's session context block for ``session_id``."""
    return render_context(f"Session Context ({session_id})", rows, max_tokens)


def render_agent_context(
    agent_id: str, rows: Sequence[MemoryRecord], max_tokens: int | None = None
) -> tuple[str, int]:
    """The same layout for an agent's memories across all its sessions."""
    return render_context(f"Agent Context ({agent_id})", rows, max_tokens)
