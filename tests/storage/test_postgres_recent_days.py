"""PostgreSQL walks a busy agent's reads back in time, newest first, and stops once it has
what it needs. A substring or tag read walks its newest days one at a time and stops at its
page (``PostgresStore.recent_page``); a large agent's ranked query walks its history a span
at a time for its pool of any term and its terms' own pools (``PostgresStore.ranked``). Either way its pages must be
the pages of the read over the whole history, whatever the page, window, scope and day or
span boundaries."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from memtrace_server.core.records import MemoryFilter, MemoryRecord, OrgRecord
from memtrace_server.storage import postgres
from memtrace_server.storage.postgres import PostgresStore, RankedWalk

pytestmark = pytest.mark.anyio
DAY = 86_400 * 10**9
NOW = time.time_ns()


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


async def filled(
    pg_url: str, make: Callable[[str, int], MemoryRecord], count: int
) -> PostgresStore:
    """An open store of two orgs, each with ``count`` memories from ``make``."""
    s = PostgresStore(pg_url)
    await s.open()
    for org in ("org_a", "org_b"):
        await s.create_org(OrgRecord(org, org, NOW))
        await s.insert_memories(org, [make(org, n) for n in range(count)], None, NOW)
    return s


@pytest.fixture
async def store(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[PostgresStore]:
    monkeypatch.setattr(postgres, "WALK_MEMORIES", 5)  # every agent here is busy enough
    s = await filled(pg_url, memory, 60)
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
    history is read. Whether an agent is busy is checked once a while. (A read the walk
    leaves may still be answered from the scope's newest memories: not here.)"""
    answered: list[bool] = []
    walk = PostgresStore.recent_page

    def not_newest(self: PostgresStore, org_id: str, flt: MemoryFilter) -> Any:
        return None
        yield

    monkeypatch.setattr(PostgresStore, "_newest_page", not_newest)

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
    b = {"agent_id": "agent_b"}  # another agent is checked for itself
    monkeypatch.setattr(postgres, "WALK_MEMORIES", 1000)  # a quiet agent: not walked
    await store.query_memories("org_a", MemoryFilter(content_contains="Needle", limit=1, **b))
    # agent_a was found busy, agent_b quiet, a moment ago: each verdict holds a while
    await store.query_memories("org_a", MemoryFilter(content_contains="Needle", limit=2, **a))
    monkeypatch.setattr(postgres, "WALK_MEMORIES", 1)
    await store.query_memories("org_a", MemoryFilter(content_contains="Needle", limit=1, **b))
    assert answered == [True, True, False, False, False, True, False]


def worded(org: str, n: int) -> MemoryRecord:
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
async def ranked_store(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[PostgresStore]:
    monkeypatch.setattr(postgres, "RANKED_POOL", 6)
    monkeypatch.setattr(postgres, "SPAN_NS", 3 * DAY)  # the 40 days are 14 spans
    monkeypatch.setattr(postgres, "RANK_SAMPLE", 30)
    monkeypatch.setattr(postgres, "RANK_WALK_MEMORIES", 50)  # agent_a: 106, agent_b: 14
    s = await filled(pg_url, worded, 120)
    try:
        yield s
    finally:
        await s.close()


QUERIES = [
    ("common",),  # fills the pool within the newest span
    ("half",),  # within a few spans
    ("half", "violet"),
    ("orchid",),  # in no span: the walk reads the whole history
    ("orchid", "violet"),
    ("common", "orchid"),
]
RANKED_FILTERS: list[dict[str, Any]] = [
    {},
    {"memory_types": ("decision",)},
    {"since_ns": NOW - 3 * DAY},  # a window inside the newest span
    {"since_ns": NOW - 20 * DAY},
    {"until_ns": NOW - 4 * DAY},
    {"since_ns": NOW - 30 * DAY, "until_ns": NOW - 10 * DAY},
]


@pytest.mark.parametrize("fields", RANKED_FILTERS)
async def test_a_walked_pool_ranks_as_the_whole_history_does(
    ranked_store: PostgresStore, monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any]
) -> None:
    store = ranked_store
    monkeypatch.setattr(postgres, "RANK_WALK_SHARE", 2.0)  # every query here is walked
    monkeypatch.setattr(postgres, "RANK_WALK_MATCHES", 0)
    monkeypatch.setattr(postgres, "TERM_WALK_MATCHES", 0)  # and so is each of its terms
    monkeypatch.setattr(postgres, "TERM_POOL", 3)  # a term's pool fills within a few spans
    cases = [(q, limit, offset) for q in QUERIES for limit, offset in ((2, 0), (3, 1), (20, 0))]
    walked = {}
    for query, limit, offset in cases:
        flt = MemoryFilter(agent_id="agent_a", query=query, limit=limit, offset=offset, **fields)
        walk = await _spans(store, flt)
        assert walk is not None and walk.newest and walk.terms == set(query), query
        walked[query, limit, offset] = await store.query_memories("org_a", flt)
    monkeypatch.setattr(PostgresStore, "_walked_spans", lambda self, *args: iter(()))
    for (query, limit, offset), found in walked.items():
        flt = MemoryFilter(agent_id="agent_a", query=query, limit=limit, offset=offset, **fields)
        whole = await store.query_memories("org_a", flt)
        case = f"{query} limit {limit} offset {offset}"
        assert [(m.id, m.score) for m in found] == [(m.id, m.score) for m in whole], case
        assert all(m.org_id == "org_a" and m.agent_id == "agent_a" for m in found), case


async def _spans(store: PostgresStore, flt: MemoryFilter) -> RankedWalk | None:
    """What the ranked query of ``flt`` walks, None for the whole history."""
    return await store._read(store._walked_spans("org_a", flt, flt.query))


async def test_a_large_agent_walks_the_pool_of_words_neither_common_nor_rare_in_it(
    ranked_store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Walked: the pool of any term for words in fewer than ``RANK_WALK_SHARE`` of the
    agent's newest memories but by that share in more than ``RANK_WALK_MATCHES`` of them
    all, a term's own pool for a term by its share there in more than
    ``TERM_WALK_MATCHES``, over fewer than ``RANK_WALK_SPANS`` spans (those of the filter's
    window). A small agent is not walked, and is known small a while; a ranked query's
    verdict on an agent is not a substring page's."""
    store = ranked_store
    monkeypatch.setattr(postgres, "RANK_WALK_MATCHES", 5)
    monkeypatch.setattr(postgres, "RANK_WALK_SHARE", 0.25)
    monkeypatch.setattr(postgres, "TERM_WALK_MATCHES", 50)

    def ranked(agent: str, *words: str, **fields: Any) -> MemoryFilter:
        return MemoryFilter(agent_id=agent, query=words, **fields)

    # "orchid" is in 1 of 7 of agent_a's memories: about 15 of 106
    spans = await _spans(store, ranked("agent_a", "orchid"))
    assert spans is not None and spans.newest and spans.high - spans.low >= 12, spans
    common = await _spans(store, ranked("agent_a", "common", "orchid"))  # 4 of 5: time order
    assert common is not None and not common.newest and common.terms == {"common"}, common
    half = await _spans(store, ranked("agent_a", "half", "violet"))  # 1 of 2, 1 of 11
    assert half is not None and not half.newest and half.terms == {"half"}, half
    narrow = await _spans(store, ranked("agent_a", "orchid", since_ns=NOW - 7 * DAY))
    assert narrow is not None and narrow.high == spans.high and narrow.low > spans.low, narrow
    assert await _spans(store, ranked("agent_a", "orchid", session_id="s")) is None
    monkeypatch.setattr(postgres, "RANK_WALK_SPANS", 10)  # a history of 14 spans: read whole
    assert await _spans(store, ranked("agent_a", "orchid")) is None
    assert await _spans(store, ranked("agent_a", "orchid", since_ns=NOW - 7 * DAY)) == narrow
    monkeypatch.setattr(postgres, "RANK_WALK_SPANS", 120)
    monkeypatch.setattr(postgres, "RANK_WALK_MATCHES", 50)  # too few matches to walk
    fewer = await _spans(store, ranked("agent_a", "orchid"))
    assert fewer is not None and not fewer.newest and not fewer.terms, fewer
    monkeypatch.setattr(postgres, "RANK_WALK_MATCHES", 0)
    assert await _spans(store, ranked("agent_b", "orchid")) is None  # 14 memories
    monkeypatch.setattr(postgres, "RANK_WALK_MEMORIES", 1)
    assert await _spans(store, ranked("agent_b", "orchid")) is None  # known small a while
    monkeypatch.setattr(postgres, "WALK_MEMORIES", 1)  # its substring pages are walked
    page = MemoryFilter(agent_id="agent_b", content_contains="orchid", limit=1)
    assert await store._read(store.recent_page("org_a", page)) is not None


async def test_a_walked_term_pool_starts_at_the_span_of_the_pool_of_any_term(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A term's own pool is walked back from the span holding the pool of any term's oldest
    memory, and holds only memories older than that: a rarer word's memories just older, in
    the same span, and the next older ones are the best ranked (the shortest) after the one
    in the pool of any term, and lead the page as they do over the whole history."""
    span = 3 * DAY
    monkeypatch.setattr(postgres, "RANKED_POOL", 6)
    monkeypatch.setattr(postgres, "TERM_POOL", 3)
    monkeypatch.setattr(postgres, "SPAN_NS", span)
    monkeypatch.setattr(postgres, "RANK_SAMPLE", 30)
    monkeypatch.setattr(postgres, "RANK_WALK_MEMORIES", 50)
    monkeypatch.setattr(postgres, "RANK_WALK_SHARE", 2.0)
    monkeypatch.setattr(postgres, "RANK_WALK_MATCHES", 0)
    monkeypatch.setattr(postgres, "TERM_WALK_MATCHES", 0)
    middle = (NOW // span - 1) * span + span // 2  # the middle of the span before this one

    def made(org: str, n: int) -> MemoryRecord:
        """Every two hours back from ``middle``: "rare" alone in the 3rd, 7th and 10th, and
        in every 9th after them; "common" with other words in the rest."""
        rare = n in (2, 6, 9) or (n > 9 and n % 9 == 0)
        return MemoryRecord(
            id=f"mem_{org}_{n:04d}",
            org_id=org,
            agent_id="agent_a",
            content="rare" if rare else f"common note {n}",
            time_ns=middle - n * 7_200 * 10**9,
        )

    store = await filled(pg_url, made, 100)
    try:
        # the pool of any term: the 8 newest (twice the page), 2 of them "rare"
        flt = MemoryFilter(agent_id="agent_a", query=("common", "rare"), limit=4)
        walk = await _spans(store, flt)
        assert walk is not None and "rare" in walk.terms, walk
        walked = await store.query_memories("org_a", flt)
        assert [m.id for m in walked] == [f"mem_org_a_{n:04d}" for n in (2, 6, 9, 18)]
        monkeypatch.setattr(PostgresStore, "_walked_spans", lambda self, *args: iter(()))
        whole = await store.query_memories("org_a", flt)
        assert [(m.id, m.score) for m in walked] == [(m.id, m.score) for m in whole]
    finally:
        await store.close()
