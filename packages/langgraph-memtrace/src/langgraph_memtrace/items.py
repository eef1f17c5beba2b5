"""How a LangGraph item is written as a Memtrace memory, and how it is read back.

An item ``(namespace, key) -> value`` is a keyed memory of the store's agent:

* the memory ``key`` encodes the namespace and the key unambiguously (``users.alice/prefs``);
* ``content`` is the value's ``text`` or ``content`` field, else a readable rendering;
* ``metadata`` holds the item itself (``lg_namespace``, ``lg_key``, ``lg_value``, and from
  the second version on ``lg_created_at``, the time of the first), the
  namespace's prefixes (``lg_ns1`` … ``lg_nsN``) so that a prefix is one exact filter, and
  the value's short top-level scalars (``lgv_<field>``) so that equality filters run on the
  server. ``langgraph: 1`` marks every item (and is the format's version).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from langgraph.store.base import InvalidNamespaceError, Item, SearchItem

from memtrace import Memory

MARKER = "langgraph"
FORMAT = 1
NAMESPACE = "lg_namespace"
KEY = "lg_key"
VALUE = "lg_value"
CREATED = "lg_created_at"
PREFIX = "lg_ns"
MIRROR = "lgv_"

MAX_MEMORY_KEY = 200  # the server's limit, in characters
MAX_FILTER_FIELD = 200
MIRROR_MAX_CHARS = 200  # longer strings are not mirrored (an equality on one is checked here)
MAX_TTL_SECONDS = 365 * 24 * 3600
_HASHED_HEAD = MAX_MEMORY_KEY - 33  # head + "#" + 32 hex digits = exactly 200 characters


def check_labels(labels: Sequence[str], *, wildcards: bool = False) -> None:
    """Refuse what LangGraph refuses in a namespace (empty labels, periods, NUL, non-strings).

    ``BaseStore``'s methods check this before batching, but ops given to ``batch`` directly
    are not checked there; the joined prefixes rely on labels without periods.
    """
    for label in labels:
        if not isinstance(label, str):
            raise InvalidNamespaceError(f"namespace labels must be strings, not {label!r}")
        if wildcards and label == "*":
            continue
        if not label or "." in label or "\x00" in label:
            raise InvalidNamespaceError(
                f"invalid namespace label {label!r} in {tuple(labels)}: labels are non-empty "
                "and contain no period or NUL"
            )


def joined(labels: Sequence[str]) -> str:
    """A namespace (or prefix) as one string: its labels joined by periods."""
    return ".".join(labels)


def prefix_field(depth: int) -> str:
    """The metadata field holding an item's namespace prefix of this depth."""
    return f"{PREFIX}{depth}"


def mirror_field(field: str) -> str:
    """The metadata field mirroring a top-level value field."""
    return MIRROR + field


def _escaped(text: str, reserved: str) -> str:
    return "".join(
        f"%{ord(c):02X}" if c in reserved or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F else c
        for c in text
    )


def memory_key(namespace: Sequence[str], key: str) -> str:
    """The memory key of an item: ``label.label/key``, escaped, at most 200 characters.

    ``%``, control characters and (in labels) ``/`` are percent-escaped, so the first ``/``
    ends the namespace and two items never share a key. A longer path keeps its first 167
    characters and ends with ``#`` and 32 hex digits of its SHA-256 (exactly 200 characters,
    while unhashed keys are shorter).
    """
    path = joined([_escaped(label, "%/") for label in namespace]) + "/" + _escaped(key, "%")
    if len(path) < MAX_MEMORY_KEY:
        return path
    digest = hashlib.sha256(path.encode("utf-8")).hexdigest()[:32]
    return f"{path[:_HASHED_HEAD]}#{digest}"


def mirrorable(field: str, value: Any) -> bool:
    """Whether a top-level value field is mirrored into metadata (and filtered on the server)."""
    if len(mirror_field(field)) > MAX_FILTER_FIELD or _escaped(field, "") != field:
        return False
    if isinstance(value, str):
        return len(value) <= MIRROR_MAX_CHARS
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value < 2**63  # what the server stores and filters on
    return value is None or isinstance(value, bool)


def item_metadata(
    namespace: Sequence[str],
    key: str,
    value: Mapping[str, Any],
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """The metadata of an item's memory (see the module's docstring); ``created_at`` is the
    item's creation time when this is not its first version."""
    metadata: dict[str, Any] = {
        MARKER: FORMAT,
        NAMESPACE: list(namespace),
        KEY: key,
        VALUE: dict(value),
    }
    if created_at is not None:
        metadata[CREATED] = created_at.isoformat()
    for depth in range(1, len(namespace) + 1):
        metadata[prefix_field(depth)] = joined(namespace[:depth])
    for field, field_value in value.items():
        if mirrorable(field, field_value):
            metadata[mirror_field(field)] = field_value
    return metadata


def item_content(value: Mapping[str, Any]) -> str:
    """What other readers see as the memory: ``text`` or ``content``, else ``field: value; …``."""
    for field in ("text", "content"):
        text = value.get(field)
        if isinstance(text, str) and text.strip():
            return text
    if not value:
        return "{}"
    return "; ".join(
        f"{field}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
        for field, v in value.items()
    )


def ttl_argument(minutes: float | None) -> str | None:
    """LangGraph's TTL (minutes) as Memtrace's ``ttl`` (whole seconds, rounded up)."""
    if minutes is None:
        return None
    seconds = math.ceil(minutes * 60)
    if not 1 <= seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be between 1 second and 365 days, got {minutes} minutes")
    return f"{seconds}s"


def item_of(memory: Memory, *, score: float | None = None, search: bool = False) -> Item | None:
    """The LangGraph item a memory holds (a ``SearchItem`` for searches), or None if it holds
    none. ``updated_at`` is the time of the current version, ``created_at`` of the first."""
    metadata = memory.metadata or {}
    namespace, key, value = metadata.get(NAMESPACE), metadata.get(KEY), metadata.get(VALUE)
    if not (
        metadata.get(MARKER) == FORMAT
        and isinstance(namespace, list)
        and all(isinstance(label, str) for label in namespace)
        and isinstance(key, str)
        and isinstance(value, dict)
    ):
        return None
    created = _created_at(metadata.get(CREATED)) or memory.time
    if search:
        return SearchItem(tuple(namespace), key, value, created, memory.time, score=score)
    return Item(
        value=value,
        key=key,
        namespace=tuple(namespace),
        created_at=created,
        updated_at=memory.time,
    )


def _created_at(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        created = datetime.fromisoformat(text)
    except ValueError:
        return None
    return created if created.tzinfo is not None else None


def namespace_of(memory: Memory) -> tuple[str, ...] | None:
    """The namespace of the item a memory holds, or None."""
    item = item_of(memory)
    return item.namespace if item else None
