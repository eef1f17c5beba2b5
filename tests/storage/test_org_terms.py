"""SQLite's word index keeps each org's words apart (``core.text.term_prefix``): a search
is weighed by its own org's words, finds what it should whatever the spelling of its
letters, and erasing memories leaves nothing of them in the index, also in a store built
before the prefixes (migration 0014). On real SQLite files."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memtrace_server.core.records import MemoryFilter, MemoryRecord, OrgRecord
from memtrace_server.core.text import query_terms
from memtrace_server.storage.base import Store
from memtrace_server.storage.registry import store_from_url

pytestmark = pytest.mark.anyio
NOW = time.time_ns()
SEC = 10**9
HOSTILE = [
    'she said "orchid" -- then: DROP TABLE memories; <script>alert(1)</script>',
    'NEAR(orchid violet) AND scope:* OR content:x* ^ "unbalanced',
    "CAFÉ crème brûlée, naïve Zoë",
    "cafe\u0301 au lait, written with a combining accent",
    "İstanbul straße ΣΊΣΥΦΟΣ 東京で寿司 emoji 🤖 under_scored words",
]


def mem(n: int, content: str, org: str = "org_a", **kw: object) -> MemoryRecord:
    t = NOW - (1000 - n) * SEC
    fields: dict[str, object] = {"agent_id": "gardener", "time_ns": t, **kw}
    return MemoryRecord(id=f"mem_{org}_{t:016x}{n:06x}", org_id=org, content=content, **fields)  # type: ignore[arg-type]


async def opened(path: Path) -> Store:
    store = store_from_url(f"sqlite:///{path.as_posix()}")
    await store.open()
    return store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await opened(tmp_path / "terms.db")
    for org in ("org_a", "org_b"):
        await s.create_org(OrgRecord(org, org, NOW))
    yield s
    await s.close()


async def ranked(store: Store, text: str, org: str = "org_a", **kw: object) -> list[MemoryRecord]:
    kw.setdefault("limit", 50)
    flt = MemoryFilter(query=tuple(query_terms(text)), **kw)  # type: ignore[arg-type]
    return await store.query_memories(org, flt)


def indexed_terms(path: Path) -> int:
    """How many terms of the word index still have a memory."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE VIRTUAL TABLE temp.terms USING fts5vocab(main, memory_terms, row)")
        return int(conn.execute("SELECT count(*) FROM temp.terms WHERE doc > 0").fetchone()[0])


async def test_a_word_is_weighed_by_how_common_it_is_in_the_org(store: Store) -> None:
    await store.insert_memories(
        "org_a",
        [
            mem(1, "orchid seeds in the garden"),  # the org's rarer word
            *[mem(2 + n, f"violet bed number {n} in the garden") for n in range(4)],
        ],
        None,
        NOW,
    )
    before = [m.content for m in await ranked(store, "orchid violet")]
    assert before[0] == "orchid seeds in the garden" and len(before) == 5
    # Another org where orchids are everywhere: a shared index would make "orchid" the
    # common word, and a violet bed would rank first.
    await store.insert_memories(
        "org_b", [mem(100 + n, "orchid orchid orchid", org="org_b") for n in range(40)], None, NOW
    )
    after = await ranked(store, "orchid violet")
    assert [m.content for m in after] == before
    assert {m.org_id for m in after} == {"org_a"}
    theirs = await ranked(store, "orchid", org="org_b")
    assert len(theirs) == 40 and {m.org_id for m in theirs} == {"org_b"}


async def test_words_are_found_whatever_their_case_accents_and_normal_form(store: Store) -> None:
    await store.insert_memories(
        "org_a", [mem(n, text) for n, text in enumerate(HOSTILE)], None, NOW
    )
    assert {m.content for m in await ranked(store, "cafe")} == {HOSTILE[2], HOSTILE[3]}
    assert {m.content for m in await ranked(store, "café")} == {HOSTILE[2], HOSTILE[3]}
    assert [m.content for m in await ranked(store, "CRÈME")] == [HOSTILE[2]]
    both = [m.content for m in await ranked(store, "orchid table")]
    assert both[0] == HOSTILE[0] and set(both) == {HOSTILE[0], HOSTILE[1]}
    assert [m.content for m in await ranked(store, "scope content")] == [HOSTILE[1]]
    assert [m.content for m in await ranked(store, "scored")] == [HOSTILE[4]]
    assert [m.content for m in await ranked(store, "Straße")] == [HOSTILE[4]]
    assert await ranked(store, "orchid", org="org_b") == []


async def test_erasing_memories_leaves_nothing_of_them_in_the_index(
    store: Store, tmp_path: Path
) -> None:
    await store.insert_memories(
        "org_a",
        [
            mem(n, text, session_id="s1", tags=("orchid", "ünïcode"))
            for n, text in enumerate(HOSTILE)
        ],
        None,
        NOW,
    )
    await store.insert_memories("org_b", [mem(50, HOSTILE[0], org="org_b")], None, NOW)
    assert indexed_terms(tmp_path / "terms.db") > 0
    await store.erase_org("org_a")
    assert [m.content for m in await ranked(store, "orchid", org="org_b")] == [HOSTILE[0]]
    await store.erase_org("org_b")
    assert indexed_terms(tmp_path / "terms.db") == 0


async def test_a_store_from_before_the_prefixes_is_migrated(tmp_path: Path) -> None:
    """Rebuild the shared index of migration 0005 from a store's own text, as an older
    store had it, and open it again: its searches match a store that never had one."""
    memories = [
        *[mem(n, text, session_id="s1", tags=("t",)) for n, text in enumerate(HOSTILE)],
        *[mem(10 + n, f"orchid violet garden note {n}" + " word" * n) for n in range(12)],
    ]
    fresh = await opened(tmp_path / "fresh.db")
    old = await opened(tmp_path / "old.db")
    for s in (fresh, old):
        await s.create_org(OrgRecord("org_a", "A", NOW))
        await s.insert_memories("org_a", memories, None, NOW)
    expected = [(m.id, m.score) for m in await ranked(fresh, "orchid violet cafe")]
    assert len(expected) == 17  # 12 notes, 4 texts with the words, 1 by its context
    await fresh.close()
    await old.close()
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.executescript(
            """
            DROP TABLE memory_terms;
            CREATE VIRTUAL TABLE memories_fts USING fts5(scope, content, labels, context,
                tokenize = 'porter unicode61 remove_diacritics 2');
            INSERT INTO memories_fts (rowid, scope, content, labels, context)
            SELECT t.rid, 'o' || lower(hex(m.org_id)) || ' a'
                || lower(hex(m.org_id || '|' || m.agent_id)), t.content, t.labels, t.context
            FROM memory_text t JOIN memories m ON m.rid = t.rid;
            DROP TABLE memory_text;
            DELETE FROM schema_migrations WHERE version = 14;
            """
        )
    migrated = await opened(tmp_path / "old.db")
    try:
        assert [(m.id, m.score) for m in await ranked(migrated, "orchid violet cafe")] == expected
        await migrated.erase_org("org_a")
    finally:
        await migrated.close()
    assert indexed_terms(tmp_path / "old.db") == 0


async def test_pages_of_a_ranking_with_ties_and_filters_are_exact(store: Store) -> None:
    """The index ranks alone first and the filter is applied to what it read; pages cut
    through ties, and a filter that the best matches fail, give what ranking everything
    under the filter gives."""
    await store.insert_memories(
        "org_a",
        [
            *[mem(n, "orchid note") for n in range(60)],  # all tied, newest first
            *[mem(100 + n, "orchid orchid twice") for n in range(3)],
            *[  # the worst matches, and the only decisions
                mem(
                    200 + n,
                    f"orchid in a long decision {n} " + "word " * 20,
                    memory_type="decision",
                )
                for n in range(4)
            ],
        ],
        None,
        NOW,
    )
    every = await ranked(store, "orchid", limit=100)
    assert len(every) == 67
    assert [m.content for m in every[:3]] == ["orchid orchid twice"] * 3
    tied = every[3:63]
    assert [m.time_ns for m in tied] == sorted((m.time_ns for m in tied), reverse=True)
    paged = []
    for offset in range(0, 70, 7):
        paged += await store.query_memories(
            "org_a", MemoryFilter(query=("orchid",), limit=7, offset=offset)
        )
    assert [m.id for m in paged] == [m.id for m in every]
    decisions = await ranked(store, "orchid", memory_types=("decision",), limit=2)
    assert [m.id for m in decisions] == [m.id for m in every[63:65]]


async def test_a_large_agent_is_ranked_within_its_orgs_ranking(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``SCOPE_WALK`` memories, an agent's scope token leaves the match (bm25() would
    walk its whole list) and the filter picks the agent's memories from the org's ranking:
    the same pages, the same scores."""
    import memtrace_server.storage.sqlite as sqlite_store

    await store.insert_memories(
        "org_a",
        [
            *[mem(n, f"orchid note {n}" + " word" * (n % 7), agent_id="big") for n in range(40)],
            *[mem(100 + n, f"orchid violet {n}", agent_id="small") for n in range(5)],
            *[mem(200 + n, "violet only", agent_id="small") for n in range(3)],
        ],
        None,
        NOW,
    )

    async def pages(agent: str) -> list[tuple[str, float | None]]:
        found = []
        for offset in (0, 2, 5):
            flt = MemoryFilter(query=("orchid", "violet"), agent_id=agent, limit=3, offset=offset)
            found += [(m.id, m.score) for m in await store.query_memories("org_a", flt)]
        return found

    scoped = {agent: await pages(agent) for agent in ("big", "small")}
    assert len(scoped["small"]) == len(scoped["big"]) == 9  # pages of 3 at 0, 2 and 5
    monkeypatch.setattr(sqlite_store, "SCOPE_WALK", 0)
    assert {agent: await pages(agent) for agent in ("big", "small")} == scoped


async def test_an_agent_that_is_its_whole_org_has_its_matches_counted_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``SCOPE_WALK`` memories, an agent's matches are counted apart from its org's (to
    size how much of the org's ranking to read for it), unless the agent holds every memory
    of its org: then the org's matches are all its own, and counted once. The pages are the
    same either way."""
    import memtrace_server.storage.sqlite as sqlite_store
    from memtrace_server.storage.sql import Result, Stmt

    await store.insert_memories(
        "org_a",
        [mem(n, f"orchid note {n}" + " word" * (n % 5), agent_id="alone") for n in range(30)],
        None,
        NOW,
    )
    await store.insert_memories(
        "org_b",
        [
            *[mem(n, f"orchid note {n}", org="org_b", agent_id="big") for n in range(30)],
            mem(50, "orchid and violet", org="org_b", agent_id="small"),
        ],
        None,
        NOW,
    )
    counts: list[str] = []
    execute = sqlite_store._execute

    def recording(conn: object, stmt: Stmt) -> Result:
        if stmt.sql.startswith("SELECT count(*) FROM (SELECT 1 FROM memory_terms"):
            counts.append(stmt.params[0])
        return execute(conn, stmt)  # type: ignore[arg-type]

    async def pages(org: str, agent: str) -> list[tuple[str, float | None]]:
        found = []
        for offset in (0, 4):
            flt = MemoryFilter(query=("orchid", "violet"), agent_id=agent, limit=4, offset=offset)
            found += [(m.id, m.score) for m in await store.query_memories(org, flt)]
        return found

    before = {org: await pages(org, agent) for org, agent in (("org_a", "alone"), ("org_b", "big"))}
    monkeypatch.setattr(sqlite_store, "SCOPE_WALK", 0)
    monkeypatch.setattr(sqlite_store, "_execute", recording)
    assert await pages("org_a", "alone") == before["org_a"]
    assert len(counts) == 2 and not any("scope:" in c for c in counts)  # one a page
    counts.clear()
    assert await pages("org_b", "big") == before["org_b"]
    assert len(counts) == 4 and sum("scope:" in c for c in counts) == 2


async def test_a_memory_whose_text_row_is_missing_is_still_erased(
    store: Store, tmp_path: Path
) -> None:
    await store.insert_memories(
        "org_a", [mem(1, "orchid kept"), mem(2, "orchid damaged")], None, NOW
    )
    with sqlite3.connect(tmp_path / "terms.db") as conn:  # a damaged store: one text row lost
        conn.execute("DELETE FROM memory_text WHERE content = 'orchid damaged'")
    await store.erase_org("org_a")
    assert await store.query_memories("org_a", MemoryFilter(limit=10)) == []
    with sqlite3.connect(tmp_path / "terms.db") as conn:
        assert conn.execute("SELECT count(*) FROM memory_text").fetchone()[0] == 0
