"""SQLite's ``bm25()`` page under a filter: the index ranks the matches, then the best of
them are looked up a stretch at a time until the page is known. Every filtered page must
equal the filter applied to the whole ranking, ties in score (identical texts, ordered
newest first) included, and a filter most of the best matches pass looks up few of them."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import memtrace_server.storage.sqlite as sqlite_store
from memtrace_server.core.records import MemoryFilter, MemoryRecord, OrgRecord
from memtrace_server.storage.base import Store
from memtrace_server.storage.registry import store_from_url

pytestmark = pytest.mark.anyio
NOW = time.time_ns()
SEC = 10**9
QUERY = ("orchid", "violet")
MATCHES = 400


def mem(n: int, org: str = "org_a") -> MemoryRecord:
    """Memory ``n``: its words (and so its score) repeat every 40 memories, so that
    identical texts tie; its plan, tags and type vary on other periods."""
    words = ["orchid"] * (1 + n % 4) + ["violet"] * (n % 3) + ["seed"] * (n % 40 // 4)
    t = NOW - (MATCHES - n) * SEC
    return MemoryRecord(
        id=f"mem_{t:016x}{n:08x}{org[-1]}",
        org_id=org,
        agent_id="gardener",
        content=" ".join(words),
        time_ns=t,
        memory_type="decision" if n % 7 == 0 else "episodic",
        metadata={"plan": "pro" if n % 2 else "free", "rare": n in (3, 150, 390)},
        tags=("north",) if n % 5 == 0 else (),
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = store_from_url(f"sqlite:///{(tmp_path / 'pages.db').as_posix()}")
    await s.open()
    for org in ("org_a", "org_b"):
        await s.create_org(OrgRecord(org, org, NOW))
    await s.insert_memories("org_a", [mem(n) for n in range(MATCHES)], None, NOW)
    # Another tenant holding the same words passes every filter and must never show.
    await s.insert_memories("org_b", [mem(n, "org_b") for n in range(100)], None, NOW)
    yield s
    await s.close()


def field(m: MemoryRecord, name: str) -> Any:
    return (m.metadata or {})[name]


FILTERS: dict[str, tuple[dict[str, Any], Callable[[MemoryRecord], bool]]] = {
    "half pass": ({"metadata": (("plan", "pro"),)}, lambda m: field(m, "plan") == "pro"),
    "three pass": ({"metadata": (("rare", True),)}, lambda m: field(m, "rare") is True),
    "a tag": ({"tags": ("north",)}, lambda m: "north" in m.tags),
    "a type": ({"memory_types": ("decision",)}, lambda m: m.memory_type == "decision"),
    "a window": (
        {"since_ns": NOW - 120 * SEC, "until_ns": NOW - 20 * SEC},
        lambda m: NOW - 120 * SEC < m.time_ns < NOW - 20 * SEC,
    ),
    "tag and plan": (
        {"tags": ("north",), "metadata": (("plan", "pro"),)},
        lambda m: "north" in m.tags and field(m, "plan") == "pro",
    ),
}


@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize(("limit", "offset"), [(5, 0), (20, 0), (7, 13), (50, 40)])
async def test_a_filtered_page_is_the_filter_applied_to_the_whole_ranking(
    store: Store, name: str, limit: int, offset: int
) -> None:
    fields, passes = FILTERS[name]
    whole = await store.query_memories("org_a", MemoryFilter(query=QUERY, limit=MATCHES))
    assert len(whole) == MATCHES
    expected = [m.id for m in whole if passes(m)][offset : offset + limit]
    flt = MemoryFilter(query=QUERY, limit=limit, offset=offset, **fields)
    found = await store.query_memories("org_a", flt)
    assert [m.id for m in found] == expected
    assert all(m.org_id == "org_a" for m in found)


async def test_a_filter_most_matches_pass_looks_up_only_the_best_of_them(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked: list[int] = []
    execute = sqlite_store._execute

    def spying(conn: Any, stmt: Any) -> Any:
        if stmt.sql.startswith("SELECT m.rid, m.time FROM json_each(?)"):
            looked.append(len(json.loads(stmt.params[0])))
        return execute(conn, stmt)

    monkeypatch.setattr(sqlite_store, "_execute", spying)
    flt = MemoryFilter(query=QUERY, limit=5, metadata=(("plan", "pro"),))
    assert len(await store.query_memories("org_a", flt)) == 5
    # Half of the matches pass: the first stretch (2 x 5 + 16 of the best) is enough,
    # where looking up every match the index read would take 8 x 5 + 200.
    assert sum(looked) <= 26


async def test_a_page_whose_last_ties_a_match_not_looked_up_looks_further(store: Store) -> None:
    """Identical texts tie: the index gives them in no useful order, so a page is only
    known once it ranks strictly above the last match looked up."""
    await store.create_org(OrgRecord("org_t", "org_t", NOW))
    same = [
        MemoryRecord(
            id=f"mem_{NOW - n * SEC:016x}{n:08x}t",
            org_id="org_t",
            agent_id="gardener",
            content="orchid violet",
            time_ns=NOW - n * SEC,
            metadata={"plan": "pro" if n % 2 else "free"},
        )
        for n in range(200, 0, -1)  # oldest first: the index gives ties oldest first
    ]
    await store.insert_memories("org_t", same, None, NOW)
    flt = MemoryFilter(query=QUERY, limit=5, metadata=(("plan", "pro"),))
    found = await store.query_memories("org_t", flt)
    assert [m.time_ns for m in found] == [NOW - n * SEC for n in (1, 3, 5, 7, 9)]
