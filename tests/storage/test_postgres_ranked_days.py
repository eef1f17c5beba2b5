"""PostgreSQL finds a busy agent's ranked pool of any term from its newest memories first:
the newest ``RANK_SCAN`` in time order, then its newest days one at a time, then its whole
history (``PostgresStore.ranked``). Each step answers only when it holds the pool's newest
matches, so every page must be the page ranked from the whole history: for words common
enough to fill the pool among the newest memories, words that fill it within the walked
days, words too rare for either, and windows that end inside or outside those days."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from memtrace_server.core.records import MemoryFilter, MemoryRecord, OrgRecord
from memtrace_server.storage import postgres
from memtrace_server.storage.postgres import PostgresStore

pytestmark = pytest.mark.anyio
DAY = 86_400 * 10**9
NOW = time.time_ns()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def memory(org: str, n: int) -> MemoryRecord:
    """Memory ``n``: three a day over 40 days. "common" is in four of five, "half" in every
    other one, "orchid" in one of seven and "violet" in one of eleven."""
    words = [w for w, every in (("half", 2), ("orchid", 7), ("violet", 11)) if n % every == 0]
    words += ["common"] if n % 5 else []
    return MemoryRecord(
        id=f"mem_{org}_{n:04d}",
        org_id=org,
        agent_id="agent_a" if n % 9 else "agent_b",
        content=" ".join([*words, "note", str(n)]),
        memory_type="decision" if n % 4 == 0 else "episodic",
        time_ns=NOW - (n // 3) * DAY - (n % 3) * 3_600 * 10**9,
    )


@pytest.fixture
async def store(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[PostgresStore]:
    monkeypatch.setattr(postgres, "WALK_MEMORIES", 5)  # every agent here is busy enough
    monkeypatch.setattr(postgres, "RANKED_POOL", 6)
    monkeypatch.setattr(postgres, "RANK_SCAN", 10)
    monkeypatch.setattr(postgres, "RANK_WALK_DAYS", 5)
    s = PostgresStore(pg_url)
    await s.open()
    for org in ("org_a", "org_b"):
        await s.create_org(OrgRecord(org, org, NOW))
        await s.insert_memories(org, [memory(org, n) for n in range(120)], None, NOW)
    try:
        yield s
    finally:
        await s.close()


QUERIES = [
    ("common",),  # fills the pool among the newest memories
    ("half",),  # fills it within the walked days
    ("half", "violet"),
    ("orchid",),  # fills neither: the whole history
    ("orchid", "violet"),
    ("common", "orchid"),
]
FILTERS: list[dict[str, Any]] = [
    {},
    {"memory_types": ("decision",)},
    {"since_ns": NOW - 3 * DAY},  # a window inside the walked days
    {"since_ns": NOW - 20 * DAY},
    {"until_ns": NOW - 4 * DAY},
    {"since_ns": NOW - 30 * DAY, "until_ns": NOW - 10 * DAY},
]


@pytest.mark.parametrize("fields", FILTERS)
async def test_a_walked_pool_ranks_as_the_whole_history_does(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any]
) -> None:
    cases = [(q, limit, offset) for q in QUERIES for limit, offset in ((2, 0), (3, 1), (20, 0))]
    walked = {}
    for query, limit, offset in cases:
        flt = MemoryFilter(agent_id="agent_a", query=query, limit=limit, offset=offset, **fields)
        walked[query, limit, offset] = await store.query_memories("org_a", flt)
    monkeypatch.setattr(PostgresStore, "_busy_day", lambda self, org_id, flt: iter(()))
    for (query, limit, offset), found in walked.items():
        flt = MemoryFilter(agent_id="agent_a", query=query, limit=limit, offset=offset, **fields)
        whole = await store.query_memories("org_a", flt)
        case = f"{query} limit {limit} offset {offset}"
        assert [(m.id, m.score) for m in found] == [(m.id, m.score) for m in whole], case
        assert all(m.org_id == "org_a" and m.agent_id == "agent_a" for m in found), case
