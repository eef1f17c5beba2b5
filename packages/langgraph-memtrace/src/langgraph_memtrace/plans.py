"""Each LangGraph store op as a plan: a generator of SDK ``Call`` objects, without I/O.

A plan yields the calls it needs, receives each result, and returns the op's LangGraph
result. ``MemtraceStore.batch`` drives plans with the sync client and ``abatch`` with the
async one, so every op is written once.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from langgraph.store.base import (
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from langgraph_memtrace.filters import split_filter
from langgraph_memtrace.items import (
    FORMAT,
    MARKER,
    check_labels,
    item_content,
    item_metadata,
    item_of,
    joined,
    memory_key,
    namespace_of,
    prefix_field,
    ttl_argument,
)
from memtrace import Memory, SearchResult
from memtrace import _operations as ops
from memtrace._base import Call

PAGE = 1000  # the server's largest page
MAX_FILTER_FIELDS = 16  # the server's limit on metadata filter fields

Plan = Generator[Call[Any], Any, Result]


@dataclass(frozen=True)
class Scope:
    """What every op of one store shares: the agent whose memories are the items, and how
    a query ranks."""

    agent_id: str
    search_mode: Literal["bm25", "hybrid"] | None = None


def plan(op: Op, scope: Scope) -> Plan:
    """The plan of one op."""
    if isinstance(op, GetOp):
        return get_item(op, scope)
    if isinstance(op, PutOp):
        return put_item(op, scope)
    if isinstance(op, SearchOp):
        return search_items(op, scope)
    if isinstance(op, ListNamespacesOp):
        return list_namespaces(op, scope)
    raise ValueError(f"unknown store operation: {type(op).__name__}")


def get_item(op: GetOp, scope: Scope) -> Plan:
    """The item's current version, or None."""
    check_labels(op.namespace)
    return (yield from _current(op.namespace, op.key, scope))


def _current(
    namespace: tuple[str, ...], key: str, scope: Scope
) -> Generator[Call[Any], Any, Item | None]:
    found: SearchResult = yield ops.search_memories(
        agent_id=scope.agent_id, key=memory_key(namespace, key), limit=1
    )
    for memory in found.results:
        item = item_of(memory)
        if item is not None and (item.namespace, item.key) == (tuple(namespace), key):
            return item
    return None


def put_item(op: PutOp, scope: Scope) -> Plan:
    """Write a new version of the item, or erase it with all its versions (value None).

    Every put carries a dedup key of its own: putting the same value again is a new
    version, and the SDK may safely retry the write. The current version is read first,
    so that the new one carries the item's creation time.
    """
    check_labels(op.namespace)
    key = memory_key(op.namespace, op.key)
    if op.value is None:
        yield ops.erase_memories(agent_id=scope.agent_id, key=key, include_superseded=True)
        return None
    current = yield from _current(op.namespace, op.key, scope)
    yield ops.add_memory(
        {
            "agent_id": scope.agent_id,
            "content": item_content(op.value),
            "key": key,
            "metadata": item_metadata(
                op.namespace, op.key, op.value, current.created_at if current else None
            ),
            "dedup_key": f"langgraph:{uuid.uuid4().hex}",
            "ttl": ttl_argument(op.ttl),
        }
    )
    return None


def search_items(op: SearchOp, scope: Scope) -> Plan:
    """Items under a namespace prefix: ranked by the query (best first, with scores) or
    newest first, filtered, from ``offset``, at most ``limit``."""
    check_labels(op.namespace_prefix)
    if op.limit <= 0:
        return []
    prefix = _prefix_filter(op.namespace_prefix)
    split = split_filter(op.filter, room=MAX_FILTER_FIELDS - len(prefix))
    filters: dict[str, Any] = {
        "agent_id": scope.agent_id,
        "metadata": {**prefix, **split.server},
    }
    if op.query:
        filters.update(query=op.query, mode=scope.search_mode)
    offset = max(op.offset, 0)
    if not split.local:
        page = yield from _scan(filters, offset=offset, count=op.limit)
        return _search_items(page, ranked=bool(op.query))
    # Local conditions: every candidate is read, in the server's order, then sliced.
    candidates = yield from _scan(filters)
    hits = _search_items(candidates, ranked=bool(op.query))
    return [hit for hit in hits if split.matches(hit.value)][offset : offset + op.limit]


def list_namespaces(op: ListNamespacesOp, scope: Scope) -> Plan:
    """The distinct namespaces of the items, filtered, truncated to ``max_depth``, sorted.

    The server narrows the scan to the prefix condition's labels before its first
    wildcard; every item under it is then read once.
    """
    conditions = op.match_conditions or ()
    head: tuple[str, ...] = ()
    for condition in conditions:
        check_labels(condition.path, wildcards=True)
        if condition.match_type == "prefix":
            fixed = _before_wildcard(condition.path)
            head = fixed if len(fixed) > len(head) else head
    memories = yield from _scan({"agent_id": scope.agent_id, "metadata": _prefix_filter(head)})
    namespaces: set[tuple[str, ...]] = set()
    for memory in memories:
        namespace = namespace_of(memory)
        if namespace is not None and all(_fits(condition, namespace) for condition in conditions):
            namespaces.add(namespace if op.max_depth is None else namespace[: op.max_depth])
    return sorted(namespaces)[max(op.offset, 0) : max(op.offset, 0) + max(op.limit, 0)]


def _prefix_filter(prefix: tuple[str, ...]) -> dict[str, Any]:
    if not prefix:
        return {MARKER: FORMAT}
    return {prefix_field(len(prefix)): joined(prefix)}


def _before_wildcard(path: Iterable[str]) -> tuple[str, ...]:
    fixed: list[str] = []
    for label in path:
        if label == "*":
            break
        fixed.append(label)
    return tuple(fixed)


def _fits(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    part = namespace[: len(path)] if condition.match_type == "prefix" else namespace[-len(path) :]
    return all(want in ("*", label) for want, label in zip(path, part, strict=True))


def _scan(
    filters: dict[str, Any], *, offset: int = 0, count: int | None = None
) -> Generator[Call[Any], Any, list[Memory]]:
    """Search page by page from ``offset``: ``count`` results, or all of them (None)."""
    found: list[Memory] = []
    seen: set[str | None] = set()
    position = offset
    while count is None or len(found) < count:
        size = PAGE if count is None else min(PAGE, count - len(found))
        page: SearchResult = yield ops.search_memories(**filters, limit=size, offset=position)
        position += len(page.results)
        # A write during the scan may shift a page by one: never return a memory twice.
        found.extend(m for m in page.results if m.id is None or m.id not in seen)
        seen.update(m.id for m in page.results)
        if len(page.results) < size:
            break
    return found


def _search_items(memories: list[Memory], *, ranked: bool) -> list[SearchItem]:
    items = (item_of(m, score=m.score if ranked else None, search=True) for m in memories)
    return [item for item in items if isinstance(item, SearchItem)]
