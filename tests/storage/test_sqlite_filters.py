"""SQLite's filtered reads by tags and metadata: the sparsest value's index drives the read
(probing the others by their index keys) unless the agent's or session's own memories
are sparser. A small ``RARE_VALUE`` makes a small store behave like a large one; every
answer is held against the filter applied by hand, and another org holding the same tags,
agent and session names, all newer, must neither appear nor crowd out a page."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

import memtrace_server.storage.sqlite as sqlite_store
from memtrace_server.core.records import MemoryFilter, MemoryRecord, OrgRecord
from memtrace_server.storage.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio
NOW = time.time_ns()
SEC = 10**9
RARE = 20


def mem(n: int, org: str, agent: str, tags: tuple[str, ...], **kw: Any) -> MemoryRecord:
    t = NOW - (2000 - n) * SEC
    refund = " asked for a Refund" if n % 4 == 0 else ""
    return MemoryRecord(
        id=f"mem_{t:016x}{n:010x}",
        org_id=org,
        agent_id=agent,
        content=f"memory {n}{refund}",
        time_ns=t,
        tags=tags,
        **kw,
    )


def busy_memory(n: int, org: str = "org_a") -> MemoryRecord:
    """Mostly "support", a third "billing", a seventh "t3"; in sessions of 50."""
    tags = ("support",) * (n % 5 != 0) + ("billing",) * (n % 3 == 0) + (f"t{n % 7}",)
    plan = "pro" if n % 4 else "free"
    return mem(n, org, "busy", tags, session_id=f"s{n // 50}", metadata={"plan": plan})


ROWS = [
    *[busy_memory(n) for n in range(0, 1200, 2)],
    # a small agent between them, with the same common tags
    *[mem(n, "org_a", "small", ("support", "billing", "t3")) for n in range(1, 1200, 38)],
]
# Another tenant, newer than all of org_a's: the same agent, session, tags and plan.
OTHER = [busy_memory(n, "org_b") for n in range(1300, 1900)]


@pytest.fixture
async def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SQLiteStore]:
    monkeypatch.setattr(sqlite_store, "RARE_VALUE", RARE)
    s = SQLiteStore(tmp_path / "filters.db", synchronous="OFF")
    await s.open()
    for org in ("org_a", "org_b"):
        await s.create_org(OrgRecord(org, org, NOW))
    # Inserted out of time order: rids say nothing of time.
    shuffled = list(ROWS)
    random.Random(7).shuffle(shuffled)
    await s.insert_memories("org_a", shuffled, None, NOW)
    await s.insert_memories("org_b", OTHER, None, NOW)
    try:
        yield s
    finally:
        await s.close()


def matching(flt: MemoryFilter) -> Callable[[MemoryRecord], bool]:
    def pick(m: MemoryRecord) -> bool:
        return (
            all(t in m.tags for t in flt.tags)
            and all((m.metadata or {}).get(k) == v for k, v in flt.metadata)
            and flt.agent_id in (None, m.agent_id)
            and flt.session_id in (None, m.session_id)
            and (flt.since_ns is None or m.time_ns > flt.since_ns)
            and (flt.until_ns is None or m.time_ns < flt.until_ns)
            and (flt.content_contains or "") in m.content
        )

    return pick


def expected(flt: MemoryFilter) -> list[str]:
    chosen = sorted(filter(matching(flt), ROWS), key=lambda m: m.time_ns, reverse=not flt.ascending)
    return [m.id for m in chosen][flt.offset : flt.offset + flt.limit]


FILTERS = [
    MemoryFilter(tags=("support", "billing")),
    MemoryFilter(tags=("billing", "support"), ascending=True),
    MemoryFilter(tags=("support", "t3"), since_ns=NOW - 1500 * SEC, until_ns=NOW - 200 * SEC),
    MemoryFilter(tags=("support", "billing"), agent_id="busy", since_ns=NOW - 1800 * SEC),
    MemoryFilter(tags=("support", "billing"), agent_id="small"),
    MemoryFilter(tags=("support",), agent_id="small", ascending=True),
    MemoryFilter(tags=("support", "billing"), session_id="s7"),
    MemoryFilter(tags=("support", "t3"), metadata=(("plan", "pro"),), agent_id="busy"),
    MemoryFilter(tags=("billing",), metadata=(("plan", "free"),), ascending=True),
    MemoryFilter(metadata=(("plan", "pro"),), tags=("t5",), since_ns=NOW - 900 * SEC),
    MemoryFilter(tags=("support", "missing")),
    MemoryFilter(content_contains="r a Refu"),
    MemoryFilter(content_contains="Refund", agent_id="busy", ascending=True),
    MemoryFilter(content_contains="Refund", tags=("support", "billing")),
    MemoryFilter(content_contains="refund"),  # case-sensitive: nothing
]


@pytest.mark.parametrize("needles", [sqlite_store.RARE_NEEDLE, 3], ids=["trigrams", "scan"])
@pytest.mark.parametrize("flt", FILTERS, ids=range(len(FILTERS)))
async def test_every_path_answers_what_the_filter_says(
    store: SQLiteStore, flt: MemoryFilter, needles: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "RARE_NEEDLE", needles)
    for limit in (100, 7):
        paged = replace(flt, limit=limit)
        assert [m.id for m in await store.query_memories("org_a", paged)] == expected(paged)
    pages: list[str] = []
    for offset in range(0, 400, 9):
        page = replace(flt, limit=9, offset=offset)
        got = [m.id for m in await store.query_memories("org_a", page)]
        assert got == expected(page)
        pages.extend(got)
    everything = [m.id for m in sorted(filter(matching(flt), ROWS), key=lambda m: m.time_ns)]
    assert pages[: len(everything)] == (everything if flt.ascending else everything[::-1])
    assert await store.count_memories("org_a", flt) == len(everything)


async def driver(store: SQLiteStore, flt: MemoryFilter) -> tuple[str, list[Any]] | None:
    found = await store._read(store.time_ordered_source("org_a", flt))
    return None if found is None else (found[0].split(" ", 1)[0], found[1][:2])


async def test_the_sparsest_range_drives(store: SQLiteStore) -> None:
    both = MemoryFilter(tags=("support", "billing"))
    # common values, no scope: the sparser tag's entries, whichever comes first
    assert await driver(store, both) == ("memory_tags", ["org_a", "billing"])
    assert await driver(store, replace(both, tags=("billing", "support"))) == (
        "memory_tags",
        ["org_a", "billing"],
    )
    assert await driver(store, replace(both, agent_id="busy")) == (
        "memory_tags",
        ["org_a", "billing"],
    )
    # an agent or session sparser than every value: its own memories, scanned
    assert await driver(store, replace(both, agent_id="small")) is None
    assert await driver(store, replace(both, session_id="s7")) is None
    # a rare value drives, whatever the scope
    rare = replace(both, tags=("support", "t3"), since_ns=NOW - 950 * SEC)
    assert await driver(store, replace(rare, agent_id="small")) == ("memory_tags", ["org_a", "t3"])
    assert await driver(store, MemoryFilter(agent_id="busy")) is None
    # a substring in few memories: its trigrams' matches, once
    found = await store._read(
        store.time_ordered_source("org_a", MemoryFilter(content_contains="Refund"))
    )
    assert found is not None and found[0].startswith("json_each(?) x0")
    assert len(orjson.loads(found[1][0])) == len([m for m in ROWS + OTHER if "Refund" in m.content])


async def test_another_org_never_shows(store: SQLiteStore) -> None:
    for flt in FILTERS:
        for org, rows in (("org_a", ROWS), ("org_b", OTHER)):
            ids = {m.id for m in rows}
            assert {m.id for m in await store.query_memories(org, flt)} <= ids
    assert await store.query_memories("org_c", FILTERS[0]) == []
