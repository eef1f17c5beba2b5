"""SQLite's substring pages of an org or an agent walk the scope's history back a stretch of
weeks at a time through the trigram index (each memory's row there carries its org's and
its agent's week): every page is held against the filter applied by hand, over a history
of 40 weeks written out of time order, with ties of time, another org holding the same
agents and texts (all newer), hostile text, and the index rebuilt from an older store."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

import memtrace_server.storage.sqlite as sqlite_store
from memtrace_server.core.records import MemoryFilter, MemoryRecord, OrgRecord
from memtrace_server.core.text import agent_scope, org_scope
from memtrace_server.storage.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio
NOW = time.time_ns()
HOUR = 3600 * 10**9
DOG = "the quick brown fox jumps over the lazy dog"


def text(n: int) -> str:
    """Words most memories share, "Refund" in one of 9, a fox in one of 13 (a lazy dog or
    a lazy cat: a long substring's trigrams are only a sample), "zebra" in 3 old ones, and
    quotes and accents in one of 17."""
    parts = [f"memory {n} about an order"]
    if n % 9 == 0:
        parts.append("asked for a Refund")
    if n % 13 == 0:
        parts.append(DOG if n % 2 else DOG.replace("dog", "cat"))
    if n in (1201, 1390, 1777):
        parts.append("saw a zebra")
    if n % 17 == 0:
        parts.append("said \"déjà vu\" 'twice'")
    return ", ".join(parts)


def memory(n: int, org: str, agent: str, hours_ago: int) -> MemoryRecord:
    t = NOW - hours_ago * HOUR
    return MemoryRecord(
        id=f"mem_{t:016x}{n:010x}",
        org_id=org,
        agent_id=agent,
        content=text(n),
        time_ns=t,
        memory_type=("episodic", "decision")[n % 2],
        importance=(n % 10) / 10,
    )


# org_a: a busy agent writing over 280 days (every 4 h, and two memories an hour apart
# sharing each time of the busy weeks' first days), a small agent every 9 days, a third.
ROWS = [
    *[memory(n, "org_a", "busy", (n - 1000) * 4) for n in range(1000, 2680)],
    *[memory(n, "org_a", "busy", (n - 3000) * 4) for n in range(3000, 3400, 7)],  # ties
    *[memory(n, "org_a", "small", (n - 5000) * 216) for n in range(5000, 5031)],
    *[memory(n, "org_a", "third", (n - 6000) * 30) for n in range(6000, 6200)],
]
OTHER = [memory(n, "org_b", "busy", (n - 8000) * 2) for n in range(8000, 8600)]
SHUFFLED = random.Random(5).sample(ROWS, len(ROWS))  # rids say nothing of time
WRITTEN = {m.id: i for i, m in enumerate(SHUFFLED + OTHER)}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "walk.db", synchronous="OFF")
    await s.open()
    for org in ("org_a", "org_b"):
        await s.create_org(OrgRecord(org, org, NOW))
    for start in range(0, len(SHUFFLED), 500):
        await s.insert_memories("org_a", SHUFFLED[start : start + 500], None, NOW)
    await s.insert_memories("org_b", OTHER, None, NOW)
    try:
        yield s
    finally:
        await s.close()


def expected(rows: list[MemoryRecord], flt: MemoryFilter) -> list[str]:
    chosen = [
        m
        for m in rows
        if flt.agent_id in (None, m.agent_id)
        and (flt.since_ns is None or m.time_ns > flt.since_ns)
        and (flt.until_ns is None or m.time_ns < flt.until_ns)
        and (not flt.memory_types or m.memory_type in flt.memory_types)
        and (flt.min_importance is None or m.importance >= flt.min_importance)
        and (flt.content_contains or "") in m.content
    ]
    # newest first; a tie of time in rid order, which is the order written
    chosen.sort(key=lambda m: (m.time_ns, WRITTEN.get(m.id, len(WRITTEN))), reverse=True)
    return [m.id for m in chosen][flt.offset : flt.offset + flt.limit]


WEEK = 7 * 24 * HOUR
FILTERS = [
    MemoryFilter(content_contains="Refund"),
    MemoryFilter(content_contains="Refund", agent_id="busy"),
    MemoryFilter(content_contains="Refund", agent_id="small"),
    MemoryFilter(content_contains="zebra"),  # three, in the oldest weeks
    MemoryFilter(content_contains="zebra", agent_id="busy", until_ns=NOW - 9 * WEEK),
    MemoryFilter(content_contains="lazy dog"),
    MemoryFilter(content_contains=DOG[4:], agent_id="busy"),  # past the sampled trigrams
    MemoryFilter(content_contains='"déjà vu"'),
    MemoryFilter(content_contains="order", agent_id="third"),  # in every memory
    MemoryFilter(content_contains="an order", agent_id="busy"),  # ties of time among them
    MemoryFilter(
        content_contains="Refund", since_ns=NOW - 17 * WEEK - 5 * HOUR, until_ns=NOW - 3 * WEEK
    ),
    MemoryFilter(content_contains="fox", memory_types=("decision",), min_importance=0.5),
    MemoryFilter(content_contains="absent"),
    MemoryFilter(content_contains="refund"),  # case-sensitive: nothing
]


@pytest.mark.parametrize(("quick", "weeks"), [(4, 64), (0, 2)], ids=["quick", "walk-only"])
@pytest.mark.parametrize("flt", FILTERS, ids=range(len(FILTERS)))
async def test_every_page_is_the_filters_own(
    store: SQLiteStore,
    flt: MemoryFilter,
    quick: int,
    weeks: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlite_store, "QUICK_PAGES", quick)
    monkeypatch.setattr(sqlite_store, "WALK_WEEKS", weeks)
    assert await store._read(store.recent_page("org_a", flt)) is not None  # walked
    for limit in (100, 7):
        paged = replace(flt, limit=limit)
        got = [m.id for m in await store.query_memories("org_a", paged)]
        assert got == expected(ROWS, paged)
    for offset in range(0, 120, 9):
        page = replace(flt, limit=9, offset=offset)
        assert [m.id for m in await store.query_memories("org_a", page)] == expected(ROWS, page)
    every = replace(flt, limit=1000)
    assert [m.id for m in await store.query_memories("org_b", every)] == expected(OTHER, every)


def test_other_reads_are_not_walked() -> None:
    walked = MemoryFilter(content_contains="Refund", agent_id="busy")
    assert sqlite_store._walks_weeks(walked)
    for flt in (
        replace(walked, content_contains="Re"),  # no trigram
        replace(walked, ascending=True),
        replace(walked, session_id="s1"),
        replace(walked, tags=("t",)),
        replace(walked, metadata=(("plan", "pro"),)),
        replace(walked, key="k"),
        replace(walked, query=("refund",)),
    ):
        assert not sqlite_store._walks_weeks(flt)


def week_entries(path: Path, org: str, agent: str) -> int:
    """How many rows of the substring index hold one of the tokens of the agent's weeks."""
    weeks = range((NOW - 300 * 24 * HOUR) // sqlite_store.WEEK_NS, NOW // sqlite_store.WEEK_NS + 1)
    tokens = [
        sqlite_store._week_token(scope, week)
        for scope in (org_scope(org), agent_scope(org, agent))
        for week in weeks
    ]
    with sqlite3.connect(path) as conn:
        match = " OR ".join(f'"{token}"' for token in tokens)
        found = conn.execute(
            "SELECT count(*) FROM memories_trigram WHERE memories_trigram MATCH ?", (match,)
        )
        return int(found.fetchone()[0])


async def test_erased_memories_leave_the_index(store: SQLiteStore, tmp_path: Path) -> None:
    path = tmp_path / "walk.db"
    assert week_entries(path, "org_b", "busy") == len(OTHER)
    flt = MemoryFilter(content_contains="Refund", agent_id="busy", limit=1000)
    refunds = await store.query_memories("org_a", flt)
    await store.delete_memories("org_a", replace(flt, since_ns=NOW - 20 * WEEK))
    kept = [
        m for m in ROWS if not (m.id in {r.id for r in refunds} and m.time_ns > NOW - 20 * WEEK)
    ]
    assert [m.id for m in await store.query_memories("org_a", flt)] == expected(kept, flt)
    await store.erase_org("org_b")
    assert week_entries(path, "org_b", "busy") == 0
    assert week_entries(path, "org_a", "busy") > 0


async def test_a_store_from_before_the_weeks_is_migrated(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """The substring index as migration 0011 made it, rebuilt: opening the store again
    rebuilds it with the weeks, and its pages are the filter's."""
    await store.close()
    with sqlite3.connect(tmp_path / "walk.db") as conn:
        conn.executescript(
            """
            DROP TABLE memories_trigram;
            CREATE VIRTUAL TABLE memories_trigram USING fts5(content,
                tokenize = 'trigram case_sensitive 1', detail = 'none', content = '');
            INSERT INTO memories_trigram (rowid, content) SELECT rid, content FROM memories;
            DELETE FROM schema_migrations WHERE version = 15;
            """
        )
    migrated = SQLiteStore(tmp_path / "walk.db", synchronous="OFF")
    await migrated.open()
    try:
        for flt in FILTERS:
            got = [m.id for m in await migrated.query_memories("org_a", flt)]
            assert got == expected(ROWS, flt)
        assert week_entries(tmp_path / "walk.db", "org_a", "small") == len(ROWS)
    finally:
        await migrated.close()


def segments(path: Path, table: str) -> int:
    """How many segments a full-text index holds (FTS5's structure record: a 4-byte
    cookie, then varints: levels, segments, ...)."""
    with sqlite3.connect(path) as conn:
        block = conn.execute(f"SELECT block FROM {table}_data WHERE id = 10").fetchone()[0]
    values, value = [], 0
    for byte in block[4:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            values.append(value)
            value = 0
            if len(values) == 2:
                break
    return int(values[1])


async def test_a_large_erase_has_the_writer_merge_the_indexes_while_idle(
    store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The erased memories' entries stay in their segments until a merge: a large erase
    has the writer merge each full-text index into one segment, a few pages at a time,
    while it has no write to do; writes go on between its steps, and the pages read the
    same while it may still be merging and after."""
    path = tmp_path / "walk.db"
    monkeypatch.setattr(sqlite_store, "MERGE_ERASED", 100)
    monkeypatch.setattr(sqlite_store, "MERGE_PAGES", 2)  # many steps, writes between them
    foxes = MemoryFilter(agent_id="third", content_contains="fox")
    assert await store.delete_memories("org_a", foxes) < 100
    assert store._merged.is_set()  # a small erase leaves the merging to FTS5
    assert segments(path, "memories_trigram") > 1
    flt = MemoryFilter(content_contains="Refund", agent_id="busy", limit=1000)
    erased = {m.id for m in await store.query_memories("org_a", flt)}
    assert await store.delete_memories("org_a", flt) == len(erased) >= 100
    kept = [
        m for m in ROWS if m.id not in erased and not (m.agent_id == "third" and "fox" in m.content)
    ]
    await store.insert_memories("org_a", [memory(9000, "org_a", "busy", 1)], None, NOW)
    kept.append(memory(9000, "org_a", "busy", 1))
    pages = (replace(flt, agent_id=None, limit=50), replace(flt, content_contains="fox"))
    for _ in range(2):  # at once, then once merged
        for page in pages:
            got = [m.id for m in await store.query_memories("org_a", page)]
            assert got == expected(kept, page)
        assert await asyncio.to_thread(store._merged.wait, 60)
    for table in sqlite_store.FULL_TEXT:
        assert segments(path, table) == 1


async def test_many_writes_have_the_writer_merge_the_indexes_once_idle(
    store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ordinary writes leave each full-text index several segments; ``MERGE_WRITTEN``
    memories written since the last merge (or a tenth of the store, if more) have the
    writer merge each into one once it has had no write for ``MERGE_IDLE``."""
    path = tmp_path / "walk.db"
    monkeypatch.setattr(sqlite_store, "MERGE_IDLE", 0.05)
    monkeypatch.setattr(sqlite_store, "MERGE_WRITTEN", 10**9)
    await store.insert_memories("org_a", [memory(9000, "org_a", "busy", 1)], None, NOW)
    assert store._merged.is_set()  # too few written: the merging is left to FTS5
    assert segments(path, "memories_trigram") > 1 and segments(path, "memory_terms") > 1
    monkeypatch.setattr(sqlite_store, "MERGE_WRITTEN", 1)  # a tenth of the store, then
    await store.insert_memories("org_a", [memory(9001, "org_a", "third", 2)], None, NOW)
    assert await asyncio.to_thread(store._merged.wait, 60)
    for table in sqlite_store.FULL_TEXT:
        assert segments(path, table) == 1
    assert store._written == 0
    kept = [*ROWS, memory(9000, "org_a", "busy", 1), memory(9001, "org_a", "third", 2)]
    for page in (
        MemoryFilter(content_contains="Refund", limit=50),
        MemoryFilter(content_contains="fox", agent_id="third"),
    ):
        assert [m.id for m in await store.query_memories("org_a", page)] == expected(kept, page)


async def test_closing_the_store_finishes_the_merge_of_a_large_erase(
    store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "MERGE_ERASED", 100)
    monkeypatch.setattr(sqlite_store, "MERGE_PAGES", 1)
    erased = await store.delete_memories("org_a", MemoryFilter(agent_id="busy"))
    assert erased > 100
    await store.close()
    for table in sqlite_store.FULL_TEXT:
        assert segments(tmp_path / "walk.db", table) == 1


async def test_a_merge_left_unfinished_at_close_resumes_once_the_store_opens_again(
    store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing the store finishes a merge for ``MERGE_ON_CLOSE`` at most (a merge at a few
    million memories takes longer): the merge it leaves is done after the store opens
    again, once the writer is idle (a brief opening, an admin command's, leaves it to the
    next), and a store opened with nothing left to merge merges nothing."""
    path = tmp_path / "walk.db"
    monkeypatch.setattr(sqlite_store, "MERGE_ERASED", 100)
    monkeypatch.setattr(sqlite_store, "MERGE_IDLE", 3600.0)  # not before the close
    monkeypatch.setattr(sqlite_store, "MERGE_ON_CLOSE", 0.0)  # nor during it
    flt = MemoryFilter(content_contains="Refund", agent_id="busy", limit=1000)
    erased = {m.id for m in await store.query_memories("org_a", flt)}
    assert await store.delete_memories("org_a", flt) == len(erased) >= 100
    await store.close()
    assert all(segments(path, table) > 1 for table in sqlite_store.FULL_TEXT)
    mark = tmp_path / "walk.db-merge"
    assert mark.exists()
    monkeypatch.setattr(sqlite_store, "MERGE_ON_CLOSE", 60.0)
    brief = SQLiteStore(path, synchronous="OFF")  # an admin command's: open, then close
    await brief.open()
    await brief.close()  # leaves a merge it did not ask for to the next opening
    assert mark.exists()
    assert all(segments(path, table) > 1 for table in sqlite_store.FULL_TEXT)
    monkeypatch.setattr(sqlite_store, "MERGE_IDLE", 0.05)
    for left in (True, False):  # the merge left, then nothing
        assert mark.exists() is left
        reopened = SQLiteStore(path, synchronous="OFF")
        await reopened.open()
        try:
            assert reopened._merged.is_set() is not left
            assert await asyncio.to_thread(reopened._merged.wait, 60)
            page = replace(flt, agent_id=None, limit=50)
            kept = [m for m in ROWS if m.id not in erased]
            assert [m.id for m in await reopened.query_memories("org_a", page)] == expected(
                kept, page
            )
        finally:
            await reopened.close()
        for table in sqlite_store.FULL_TEXT:
            assert segments(path, table) == 1
