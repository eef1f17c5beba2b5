"""Ranked search over a pool: when a query's words are common in its scope, recent matches
are ranked, not every match (SQLite: of each term and of each pair of its rarest terms;
PostgreSQL: of any term and of every term). Small pool sizes here make a small store
behave like a large one. SQLite walks the org's matches for an agent that holds most of
its org's memories, and the agent's own for one that does not ("crowded")."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import memtrace_server.storage.sqlite as sqlite_store
from memtrace_server.core.records import AgentRecord, MemoryFilter, MemoryRecord, OrgRecord
from memtrace_server.storage.base import Store
from memtrace_server.storage.registry import store_from_url
from memtrace_server.storage.sql import Result, Stmt

pytestmark = pytest.mark.anyio
NOW = time.time_ns()
SEC = 10**9


def mem(n: int, content: str, org: str = "org_a", **kw: object) -> MemoryRecord:
    t = NOW - (1000 - n) * SEC
    fields: dict[str, object] = {"agent_id": "busy", "time_ns": t, **kw}
    return MemoryRecord(id=f"mem_{t:016x}{n:010x}", org_id=org, content=content, **fields)  # type: ignore[arg-type]


async def fill(s: Store) -> None:
    """Memories of a busy agent: a few hold both rare words, many newer ones one or none."""
    for org in ("org_a", "org_b"):
        await s.create_org(OrgRecord(org, org, NOW))
    memories = [
        # the best answers: both rare words, and the oldest of all
        mem(1, "customer asked about the orchid and the violet"),
        mem(2, "orchid and violet seeds for the customer"),
        mem(3, "a violet orchid, the customer said", memory_type="decision"),
        # a superseded version holding both words never comes back
        mem(4, "orchid violet old plan", key="plan", superseded_by="mem_x"),
        # then many memories with one rare word or only the common one, all newer
        *[mem(10 + n, f"customer note {n} about the orchid") for n in range(12)],
        *[mem(30 + n, f"customer note {n} about the violet") for n in range(12)],
        *[mem(50 + n, f"customer account note {n}") for n in range(60)],
    ]
    await s.insert_memories("org_a", memories, None, NOW)
    await s.insert_memories(  # another tenant, full of the same words
        "org_b", [mem(200 + n, "orchid violet customer", org="org_b") for n in range(30)], None, NOW
    )


def small_bounds(monkeypatch: pytest.MonkeyPatch, **more: int) -> None:
    """SQLite's ranking bounds made small, so that a store of a few hundred memories is
    ranked as a large one is (and ``more`` of its settings set)."""
    bounds = {"EXACT": 20, "TERM_WALK": 20, "BM25_MATCHES": 5, "WINDOW": 40, **more}
    for name, value in bounds.items():
        monkeypatch.setattr(sqlite_store, name, value)


def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Stmt]:
    """Every statement SQLite runs from now on."""
    seen: list[Stmt] = []
    execute = sqlite_store._execute

    def recording(conn: object, stmt: Stmt) -> Result:
        seen.append(stmt)
        return execute(conn, stmt)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_store, "_execute", recording)
    return seen


def pool_limits(seen: list[Stmt]) -> set[int]:
    """The LIMIT of each newest-matches read of the word index among ``seen``."""
    return {
        int(stmt.params[-1])
        for stmt in seen
        if "FROM memory_terms WHERE memory_terms MATCH ?" in stmt.sql
        and "rowid DESC LIMIT" in stmt.sql
    }


@pytest.fixture(params=["sqlite", "sqlite-crowded", "postgres", "postgres-walked"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Store]:
    if request.param.startswith("postgres"):
        from memtrace_server.storage import postgres

        monkeypatch.setattr(postgres, "RANKED_POOL", 5)
        if request.param == "postgres-walked":  # every agent large: the pool of any term
            monkeypatch.setattr(postgres, "RANK_WALK_MEMORIES", 1)  # walks its history
            monkeypatch.setattr(postgres, "RANK_WALK_SHARE", 2.0)
            monkeypatch.setattr(postgres, "RANK_WALK_MATCHES", 0)
        s = store_from_url(request.getfixturevalue("pg_url"))
    else:
        for bound in ("EXACT", "TERM_WALK"):
            monkeypatch.setattr(sqlite_store, bound, 20)
        monkeypatch.setattr(sqlite_store, "BM25_MATCHES", 5)  # a term: 15 for the three here
        monkeypatch.setattr(sqlite_store, "RANKED_POOL", 5)
        monkeypatch.setattr(sqlite_store, "WINDOW", 40)
        s = store_from_url(f"sqlite:///{(tmp_path / 'pool.db').as_posix()}")
    await s.open()
    await fill(s)
    if request.param == "sqlite-crowded":  # the agent is a minority of its org: scoped walks
        crowd = [
            mem(300 + n, f"customer orchid violet crowd note {n}", agent_id="crowd")
            for n in range(120)
        ]
        await s.insert_memories("org_a", crowd, None, NOW)
    yield s
    await s.close()


async def ranked(store: Store, **kw: object) -> list[MemoryRecord]:
    flt = MemoryFilter(agent_id="busy", query=("customer", "orchid", "violet"), **kw)  # type: ignore[arg-type]
    return await store.query_memories("org_a", flt)


async def test_memories_with_two_rare_words_come_first_from_the_whole_history(
    store: Store,
) -> None:
    top = await ranked(store, limit=3)
    assert {m.content for m in top} == {
        "customer asked about the orchid and the violet",
        "orchid and violet seeds for the customer",
        "a violet orchid, the customer said",
    }
    assert all(m.score is not None and m.score > 0 for m in top)


async def test_the_pool_stays_in_the_tenant_and_hides_old_versions(store: Store) -> None:
    found = await ranked(store, limit=50)
    assert len(found) == 50
    assert all(m.org_id == "org_a" and m.agent_id == "busy" for m in found)
    assert "orchid violet old plan" not in {m.content for m in found}
    scores = [m.score or 0.0 for m in found]
    assert scores == sorted(scores, reverse=True)


async def test_a_rarer_word_is_ranked_from_before_a_common_words_newest_matches(
    store: Store,
) -> None:
    """The newest matches of a common word fill a pool of any word; a memory older than
    all of them, by months, holding only the query's rarer word still comes first."""
    peony = mem(5, "peony: a peony bouquet, the peony kind", time_ns=NOW - 200 * 86_400 * SEC)
    await store.insert_memories("org_a", [peony], None, NOW)
    flt = MemoryFilter(agent_id="busy", query=("customer", "peony"), limit=3)
    found = await store.query_memories("org_a", flt)
    assert found[0].id == peony.id


async def test_only_the_rarest_words_of_a_long_query_have_pools_of_their_own(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL reads each term's pool from the whole history (its index keeps no time
    order), so a query of many words gives only its rarest ``TERM_POOLS`` a pool: the old
    memory holding only the rarest is still ranked, wherever that word is in the query."""
    from memtrace_server.storage import postgres

    monkeypatch.setattr(postgres, "TERM_POOLS", 1)
    peony = mem(5, "peony: a peony bouquet, the peony kind", time_ns=NOW - 200 * 86_400 * SEC)
    newest = mem(999, "an orchid account")  # the pool of any term holds orchid, not peony
    await store.insert_memories("org_a", [peony, newest], None, NOW)
    for words in (("orchid", "account", "peony"), ("peony", "orchid", "account")):
        flt = MemoryFilter(agent_id="busy", query=words, limit=3)
        found = await store.query_memories("org_a", flt)
        assert peony.id in {m.id for m in found}, words


async def test_pages_do_not_overlap(store: Store) -> None:
    first, second = await ranked(store, limit=5), await ranked(store, limit=5, offset=5)
    assert len(second) == 5 and not {m.id for m in first} & {m.id for m in second}


async def test_a_narrow_filter_is_ranked_over_every_match(store: Store) -> None:
    found = await ranked(store, memory_types=("decision",), limit=5)
    assert [m.content for m in found] == ["a violet orchid, the customer said"]


async def test_sqlite_pools_a_query_by_its_matches_for_each_term(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool costs by term (each term's recent matches, scored in Python), ``bm25()`` by
    match: a query of more terms is left to ``bm25()`` up to more matches. Here a term's
    bound is 5: "orchid violet" (28 matches in the org) is pooled, and with four more words
    (still 28 matches, under 6 x 5) it is not."""
    monkeypatch.setattr(sqlite_store, "EXACT", 20)
    monkeypatch.setattr(sqlite_store, "BM25_MATCHES", 5)
    monkeypatch.setattr(sqlite_store, "RANKED_POOL", 5)
    pooled: list[int] = []
    score = sqlite_store.bm25

    def counting(*args: object, **kw: object) -> object:
        pooled.append(1)
        return score(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_store, "bm25", counting)
    store = store_from_url(f"sqlite:///{(tmp_path / 'terms.db').as_posix()}")
    await store.open()
    try:
        await fill(store)

        async def org_ranked(*words: str) -> list[MemoryRecord]:
            return await store.query_memories("org_a", MemoryFilter(query=words, limit=10))

        assert len(await org_ranked("orchid", "violet")) == 10 and pooled
        pooled.clear()
        more = await org_ranked("orchid", "violet", "seeds", "said", "asked", "plan")
        assert len(more) == 10 and not pooled
        assert {m.content for m in more[:3]} == {
            "customer asked about the orchid and the violet",
            "orchid and violet seeds for the customer",
            "a violet orchid, the customer said",
        }
    finally:
        await store.close()


@pytest.mark.parametrize("crowd", [0, 20])
async def test_sqlite_pools_fewer_matches_where_the_org_is_the_agents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crowd: int
) -> None:
    """Where an agent is (nearly) its whole org, no filter thins its pool: it takes each
    term's ``WHOLE_POOL`` newest matches, not ``RANKED_POOL`` (as an org's own query does);
    an agent with a fifth of its org beside it keeps the larger pool. The best answers come
    first either way. An agent alone in its org is not asked whether it has fewer than
    ``EXACT`` matches (its org's count says it has not)."""
    small_bounds(monkeypatch, RANKED_POOL=12, WHOLE_POOL=6)
    seen = recorded(monkeypatch)
    store = store_from_url(f"sqlite:///{(tmp_path / 'whole.db').as_posix()}")
    await store.open()
    try:
        await fill(store)
        others = [mem(400 + n, f"other note {n}", agent_id="other") for n in range(crowd)]
        if others:
            await store.insert_memories("org_a", others, None, NOW)
        for agent in ("busy", "other")[: 1 + bool(crowd)]:
            await store.ensure_agent("org_a", agent, AgentRecord(agent, "org_a", agent, NOW))
        found = await store.query_memories(
            "org_a", MemoryFilter(agent_id="busy", query=("orchid", "violet"), limit=2)
        )
        assert {m.content for m in found} <= {
            "customer asked about the orchid and the violet",
            "orchid and violet seeds for the customer",
            "a violet orchid, the customer said",
        }
        limits = pool_limits(seen)
        assert limits - {20, 40} == ({12} if crowd else {6})  # less EXACT's and WINDOW's
        # The agent alone in its org has all of the org's matches, EXACT or more: its own
        # are not read to see whether they are fewer.
        assert (20 in limits) == bool(crowd)
        seen.clear()
        await store.query_memories("org_a", MemoryFilter(query=("orchid", "violet"), limit=2))
        assert pool_limits(seen) - {20, 40} == {6}
    finally:
        await store.close()


@pytest.mark.parametrize("crowd", [0, 120])
async def test_sqlite_gives_a_long_querys_commoner_words_one_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crowd: int
) -> None:
    """SQLite scores each pooled memory in Python, so only a query's ``TERM_POOLS`` rarest
    words in the scope's window have pools of their own; the others share one, their newest
    matches. An old memory holding only the rarest word is still ranked, wherever that word
    is in the query; under the newest matches of the commoner words it is not in their
    pool, so this fails when the own pools go to the query's first words."""
    small_bounds(monkeypatch, RANKED_POOL=5, WHOLE_POOL=5, TERM_POOLS=1)
    store = store_from_url(f"sqlite:///{(tmp_path / 'long.db').as_posix()}")
    await store.open()
    try:
        await fill(store)
        if crowd:  # the agent a minority of its org: its own matches are walked
            others = [
                mem(300 + n, f"orchid account crowd {n}", agent_id="crowd") for n in range(crowd)
            ]
            await store.insert_memories("org_a", others, None, NOW)
        peony = mem(5, "peony: a peony bouquet, the peony kind", time_ns=NOW - 200 * 86_400 * SEC)
        newer = [mem(900 + n, f"an orchid account {n}") for n in range(30)]
        await store.insert_memories("org_a", [peony, *newer], None, NOW)
        for words in (("orchid", "account", "peony"), ("peony", "orchid", "account")):
            flt = MemoryFilter(agent_id="busy", query=words, limit=10)
            found = await store.query_memories("org_a", flt)
            assert found[0].id == peony.id, words
            assert all(m.org_id == "org_a" and m.agent_id == "busy" for m in found)
    finally:
        await store.close()


async def test_sqlite_pairs_the_rarest_words_when_every_pool_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memories holding two of a query's ``PAIRED_TERMS`` rarest words are read from a
    longer stretch of history than the pools reach. Rarest by their share of the scope's
    window: where every word fills its pool, the pools' lengths are all the same and tell
    nothing. The only memory with both rare words, older than every pool's matches, comes
    first whatever the words' order in the query."""
    small_bounds(monkeypatch, EXACT=5, TERM_WALK=3, BM25_MATCHES=1, WHOLE_POOL=4, PAIRED_TERMS=2)
    store = store_from_url(f"sqlite:///{(tmp_path / 'pairs.db').as_posix()}")
    await store.open()
    try:
        await store.create_org(OrgRecord("org_a", "org_a", NOW))
        best = mem(1, "the orchid and the violet")
        older = [mem(10 + n, f"an orchid note {n}") for n in range(8)]
        older += [mem(20 + n, f"a violet note {n}") for n in range(8)]
        newest = [mem(40 + n, f"customer note {n}") for n in range(30)]
        await store.insert_memories("org_a", [best, *older, *newest], None, NOW)
        for words in (("customer", "orchid", "violet"), ("violet", "customer", "orchid")):
            flt = MemoryFilter(agent_id="busy", query=words, limit=1)
            found = await store.query_memories("org_a", flt)
            assert [m.id for m in found] == [best.id], words
    finally:
        await store.close()


def pair_bounds(monkeypatch: pytest.MonkeyPatch, **more: int) -> None:
    """``small_bounds`` for the pairs of a pooled query: pools of 4, and a pair of common
    words (more than 30 matches in the scope) read over a stretch of about 30 of each."""
    small_bounds(
        monkeypatch,
        EXACT=5,
        TERM_WALK=3,
        BM25_MATCHES=1,
        WHOLE_POOL=4,
        PAIRED_MATCHES=30,
        PAIRED_WALK=30,
        **more,
    )


async def test_sqlite_reads_a_pair_of_common_words_over_a_short_stretch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pair of the rarest words is read with FTS5's AND over ``PAIRED_SPAN`` windows
    when its rarer word has at most about ``PAIRED_WALK`` matches (an AND that finds none
    walks that word's every match); a pair of common words is read word by word, over a
    stretch holding about ``PAIRED_MATCHES`` matches of either at most: two common words
    that never meet in a memory (two event types) are not walked through the history. The
    only memory holding both rare words, the oldest, comes first."""
    pair_bounds(monkeypatch)
    seen = recorded(monkeypatch)
    path = tmp_path / "stretch.db"
    store = store_from_url(f"sqlite:///{path.as_posix()}")
    await store.open()
    try:
        await store.create_org(OrgRecord("org_a", "org_a", NOW))
        best = mem(1, "an orchid and a violet")
        notes = [
            mem(10 + n, f"customer note {n}", event_type=("action", "observation")[n % 2])
            for n in range(400)
        ]
        await store.insert_memories("org_a", [best, *notes], None, NOW)
        words = ("action", "observation", "orchid", "violet")
        found = await store.query_memories(
            "org_a", MemoryFilter(agent_id="busy", query=words, limit=1)
        )
        assert [m.id for m in found] == [best.id]
    finally:
        await store.close()
    pairs = [stmt for stmt in seen if "rowid > ?" in stmt.sql]
    assert len(pairs) == 6  # every pair of the four words

    def matches(word: str, since: int = 0) -> int:
        found = conn.execute(
            "SELECT count(*) FROM memory_terms WHERE memory_terms MATCH ? AND rowid > ?",
            (f'"{word}"', since),
        ).fetchone()
        return int(found[0])

    with sqlite3.connect(path) as conn:
        for stmt in pairs:
            words = re.findall(r'"([^"]+)"', " ".join(map(str, stmt.params)))
            assert len(words) == 2
            if "INTERSECT" in stmt.sql:  # each word's matches in the stretch: a few
                assert max(matches(w, stmt.params[1]) for w in words) <= 2 * 30, words
            else:  # the AND's walk: the rarer word's every match, a few
                assert min(matches(w) for w in words) <= 2 * 30, words
        assert sum("INTERSECT" in stmt.sql for stmt in pairs) == 1  # the event types


async def test_sqlite_reads_a_common_pair_over_its_words_matches_where_the_window_is_sparse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pair of common words is read over a stretch holding about ``PAIRED_MATCHES`` of
    either's matches even where the scope's newest memories lie sparse among the store's
    rowids (another org wrote between them) and its older ones dense: a stretch sized by
    the window's rate reached far into the dense part, several times the matches meant."""
    pair_bounds(monkeypatch, WINDOW=20)
    seen = recorded(monkeypatch)
    path = tmp_path / "sparse.db"
    store = store_from_url(f"sqlite:///{path.as_posix()}")
    await store.open()
    kinds = ("action", "observation")
    try:
        for org in ("org_a", "org_b"):
            await store.create_org(OrgRecord(org, org, NOW))
        best = mem(1, "an orchid and a violet")
        dense = [mem(10 + n, f"customer note {n}", event_type=kinds[n % 2]) for n in range(400)]
        await store.insert_memories("org_a", [best, *dense], None, NOW)
        for n in range(20):  # the newest: one in twenty of the store's rows
            recent = mem(500 + n, f"recent note {n}", event_type=kinds[n % 2])
            await store.insert_memories("org_a", [recent], None, NOW)
            others = [mem(600 + 19 * n + k, "another org", org="org_b") for k in range(19)]
            await store.insert_memories("org_b", others, None, NOW)
        found = await store.query_memories(
            "org_a", MemoryFilter(agent_id="busy", query=(*kinds, "orchid", "violet"), limit=1)
        )
        assert [m.id for m in found] == [best.id]
    finally:
        await store.close()
    pairs = [stmt for stmt in seen if "INTERSECT" in stmt.sql]
    assert len(pairs) == 1  # the event types
    words = re.findall(r'"([^"]+)"', " ".join(map(str, pairs[0].params)))  # as indexed
    assert len(words) == 2
    with sqlite3.connect(path) as conn:
        for word in words:
            within = conn.execute(
                "SELECT count(*) FROM memory_terms WHERE memory_terms MATCH ? AND rowid > ?",
                (f'"{word}"', pairs[0].params[1]),
            ).fetchone()[0]
            assert within <= 2 * 30, (word, within)


@pytest.mark.parametrize("window_ranked", [10_000, 1])
async def test_sqlite_ranks_a_narrow_windows_matches_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window_ranked: int
) -> None:
    """A ranked query past the ``bm25()`` bound with a time window holding few of its
    scope's memories ranks the window's matches whole (the time index gives the window,
    the word index its matches), not the history's pool: the same page as the pool and
    its fallback give (``WINDOW_RANKED`` 1 here), without reading the pool. The window's
    memories were written before and after the older ones, so their rids bound nothing
    but the window; a superseded version and another org's memories stay out."""
    small_bounds(monkeypatch, RANKED_POOL=5, WINDOW_RANKED=window_ranked)
    seen = recorded(monkeypatch)
    store = store_from_url(f"sqlite:///{(tmp_path / 'window.db').as_posix()}")
    await store.open()
    try:
        for org in ("org_a", "org_b"):
            await store.create_org(OrgRecord(org, org, NOW))
        both = mem(1, "<b>orchid</b> and violet, in the window", time_ns=NOW - 50 * SEC)
        older = [
            mem(100 + n, f"orchid violet before the window {n}", time_ns=NOW - 2 * 86_400 * SEC)
            for n in range(30)
        ]
        one = mem(2, "an orchid in the window", time_ns=NOW - 40 * SEC)
        old_version = mem(3, "orchid violet orchid", time_ns=NOW - 30 * SEC, superseded_by="x")
        for batch in ([both], older, [one, old_version]):
            await store.insert_memories("org_a", batch, None, NOW)
        other = [
            mem(200 + n, "orchid violet", org="org_b", time_ns=NOW - 20 * SEC) for n in range(5)
        ]
        await store.insert_memories("org_b", other, None, NOW)
        flt = MemoryFilter(
            agent_id="busy", query=("orchid", "violet"), since_ns=NOW - 100 * SEC, limit=10
        )
        found = await store.query_memories("org_a", flt)
        assert [m.id for m in found] == [both.id, one.id]
        assert found[0].score is not None and found[1].score is not None
        assert found[0].score > found[1].score > 0
        pooled = [stmt for stmt in seen if "rowid DESC LIMIT" in stmt.sql or "bm25(" in stmt.sql]
        assert bool(pooled) == (window_ranked == 1)
    finally:
        await store.close()
