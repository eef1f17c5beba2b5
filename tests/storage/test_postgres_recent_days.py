"""PostgreSQL walks a busy agent's substring or tag read over its newest days first, one day
at a time, and stops at its page (``PostgresStore.recent_page``). Its pages must be the pages
of the read over the whole history, whatever the page, window, scope and day boundaries."""

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
    """Memory ``n``: about three a day over the last 20 days, two at the same time now
    and then (the insertion order decides), a needle in some and tags on others."""
    t = NOW - (n // 3) * DAY - (n % 3) * 3_600 * 10**9 * (n % 2)
    return MemoryRecord(
        id=f"mem_{org}_{n:04d}",
        org_id=org,
        agent_id="agent_a" if n % 4 else "agent_b",
        content=("a Needle here " if n % 5 in (0, 2) else "hay only ") + f"#{n}",
        tags=tuple(t for t, every in (("t1", 2), ("t2", 3)) if n % every == 0),
        time_ns=t,
    )


@pytest.fixture
async def store(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[PostgresStore]:
    monkeypatch.setattr(postgres, "WALK_MEMORIES", 5)  # every agent here is busy enough
    s = PostgresStore(pg_url)
    await s.open()
    for org in ("org_a", "org_b"):
        await s.create_org(OrgRecord(org, org, NOW))
        await s.insert_memories(org, [memory(org, n) for n in range(60)], None, NOW)
    try:
        yield s
    finally:
        await s.close()


FILTERS: list[dict[str, Any]] = [
    {"content_contains": "Needle"},
    {"content_contains": "needle"},  # case-sensitive: nothing
    {"tags": ("t1",)},
    {"tags": ("t1", "t2")},
    {"content_contains": "Needle", "tags": ("t2",)},
    {"content_contains": "Needle", "since_ns": NOW - 3 * DAY},
    {"tags": ("t1",), "since_ns": NOW - 12 * DAY},
    {"content_contains": "Needle", "until_ns": NOW - 9 * DAY},
    {"content_contains": "Needle", "since_ns": NOW - 15 * DAY, "until_ns": NOW - 2 * DAY},
]


@pytest.mark.parametrize("fields", FILTERS)
@pytest.mark.parametrize("agent", ["agent_a", "agent_b"])
@pytest.mark.parametrize(("limit", "offset"), [(1, 0), (3, 2), (7, 4), (50, 0)])
async def test_pages_from_the_newest_days_are_the_pages_of_the_whole_history(
    store: PostgresStore,
    monkeypatch: pytest.MonkeyPatch,
    fields: dict[str, Any],
    agent: str,
    limit: int,
    offset: int,
) -> None:
    flt = MemoryFilter(agent_id=agent, limit=limit, offset=offset, **fields)
    walked = await store.query_memories("org_a", flt)
    monkeypatch.setattr(PostgresStore, "recent_page", lambda self, org_id, flt: iter(()))
    whole = await store.query_memories("org_a", flt)
    assert [m.id for m in walked] == [m.id for m in whole]
    assert all(m.org_id == "org_a" for m in walked)


async def test_a_page_within_the_newest_days_is_read_from_them_alone(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk answers alone when the page fills within its days, or when the filter's
    window lies within them; else (or for an org-wide read, or a quiet agent) the whole
    history is read."""
    answered: list[bool] = []
    walk = PostgresStore.recent_page

    def spy(self: PostgresStore, org_id: str, flt: MemoryFilter) -> Any:
        page = yield from walk(self, org_id, flt)
        answered.append(page is not None)
        return page

    monkeypatch.setattr(PostgresStore, "recent_page", spy)
    monkeypatch.setattr(postgres, "WALK_DAYS", 3)
    a = {"agent_id": "agent_a"}
    await store.query_memories("org_a", MemoryFilter(content_contains="Needle", limit=2, **a))
    await store.query_memories("org_a", MemoryFilter(tags=("t1",), since_ns=NOW - 2 * DAY, **a))
    await store.query_memories("org_a", MemoryFilter(content_contains="Needle", limit=40, **a))
    await store.query_memories("org_a", MemoryFilter(content_contains="Needle", limit=2))
    monkeypatch.setattr(postgres, "WALK_MEMORIES", 1000)  # a quiet agent: not walked
    await store.query_memories("org_a", MemoryFilter(content_contains="Needle", limit=2, **a))
    monkeypatch.setattr(postgres, "WALK_MEMORIES", 1)  # busy again, but found quiet a moment ago
    await store.query_memories("org_a", MemoryFilter(content_contains="Needle", limit=2, **a))
    b = {"agent_id": "agent_b"}  # another agent is checked for itself
    await store.query_memories("org_a", MemoryFilter(content_contains="Needle", limit=1, **b))
    assert answered == [True, True, False, False, False, False, True]
