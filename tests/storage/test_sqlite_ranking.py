"""SQLite's ranking of a query with few matches in its scope, when FTS5's ``bm25()`` does
not rank it (``BM25_MATCHES`` and ``TERM_WALK`` are set to 0 here): every match is scored by
``core.ranking`` with the scope's own statistics, on a real SQLite file."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import memtrace_server.storage.sqlite as sqlite_store
from memtrace_server.core.records import MemoryFilter, MemoryRecord, OrgRecord
from memtrace_server.storage.base import Store
from memtrace_server.storage.registry import store_from_url

pytestmark = pytest.mark.anyio
NOW = time.time_ns()
SEC = 10**9
FILLER = [f"plain garden note number {n}" for n in range(20)]


def mem(n: int, content: str, org: str = "org_a", **kw: object) -> MemoryRecord:
    t = NOW - (1000 - n) * SEC
    fields: dict[str, object] = {"agent_id": "gardener", "time_ns": t, **kw}
    return MemoryRecord(id=f"mem_{t:016x}{n:010x}", org_id=org, content=content, **fields)  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Store]:
    for bound in ("BM25_MATCHES", "TERM_WALK"):  # an org's and an agent's queries alike
        monkeypatch.setattr(sqlite_store, bound, 0)
    s = store_from_url(f"sqlite:///{(tmp_path / 'ranked.db').as_posix()}")
    await s.open()
    for org in ("org_a", "org_b"):
        await s.create_org(OrgRecord(org, org, NOW))
    yield s
    await s.close()


async def ranked(store: Store, *words: str, org: str = "org_a", **kw: object) -> list[MemoryRecord]:
    return await store.query_memories(org, MemoryFilter(query=words, limit=50, **kw))  # type: ignore[arg-type]


async def test_more_matches_and_rarer_words_rank_first(store: Store) -> None:
    await store.insert_memories(
        "org_a",
        [
            mem(1, "orchid and violet in the garden"),  # both rare words, and the oldest
            mem(2, "an orchid in the garden today"),  # the rarer of the two
            mem(3, "a violet violet garden bed"),  # twice the commoner rare word
            *[mem(4 + n, f"a violet tulip garden {n}") for n in range(5)],  # as long, once
            *[mem(10 + n, text) for n, text in enumerate(FILLER)],  # the common word only
        ],
        None,
        NOW,
    )
    found = await ranked(store, "garden", "orchid", "violet")
    contents = [m.content for m in found]
    assert contents[:3] == [
        "orchid and violet in the garden",
        "an orchid in the garden today",
        "a violet violet garden bed",
    ]
    assert set(contents[3:8]) == {f"a violet tulip garden {n}" for n in range(5)}
    assert set(contents[8:]) == set(FILLER)
    scores = [m.score or 0.0 for m in found]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0


async def test_a_match_in_content_outweighs_one_in_context_which_outweighs_a_tag(
    store: Store,
) -> None:
    await store.insert_memories(
        "org_a",
        [
            mem(1, "orchid seeds were ordered", session_id="s1"),
            mem(2, "then the delivery came late", session_id="s1"),  # its context: mem 1
            mem(3, "the delivery of lily seeds came very late", tags=("orchid",)),
            *[mem(10 + n, f"delivery note {n} came") for n in range(10)],
        ],
        None,
        NOW,
    )
    found = await ranked(store, "orchid")  # lengths alike: content, context, tags in turn
    assert [m.content for m in found] == [
        "orchid seeds were ordered",
        "then the delivery came late",
        "the delivery of lily seeds came very late",
    ]


async def test_the_ranking_stays_in_the_tenant_and_uses_only_its_statistics(
    store: Store,
) -> None:
    await store.insert_memories(
        "org_a",
        [mem(1, "orchid and violet"), mem(2, "a violet garden"), mem(3, "an orchid garden")],
        None,
        NOW,
    )
    before = await ranked(store, "orchid", "violet", "garden")
    await store.insert_memories(  # another tenant, where orchids are everywhere
        "org_b", [mem(100 + n, "orchid orchid", org="org_b") for n in range(40)], None, NOW
    )
    after = await ranked(store, "orchid", "violet", "garden")
    assert [(m.id, m.score) for m in after] == [(m.id, m.score) for m in before]
    assert {m.org_id for m in after} == {"org_a"} and len(after) == 3
    theirs = await ranked(store, "orchid", "violet", "garden", org="org_b")
    assert {m.org_id for m in theirs} == {"org_b"} and len(theirs) == 40


async def test_old_versions_are_hidden_and_pages_do_not_overlap(store: Store) -> None:
    await store.insert_memories(
        "org_a",
        [
            mem(1, "orchid plan old", key="plan", superseded_by="mem_new"),
            *[mem(10 + n, f"orchid note {n}" + " word" * n) for n in range(12)],
        ],
        None,
        NOW,
    )
    every = await ranked(store, "orchid")
    assert len(every) == 12 and "orchid plan old" not in {m.content for m in every}
    first = await store.query_memories("org_a", MemoryFilter(query=("orchid",), limit=5))
    second = await store.query_memories("org_a", MemoryFilter(query=("orchid",), limit=5, offset=5))
    assert [m.id for m in first + second] == [m.id for m in every[:10]]
    agent = await ranked(store, "orchid", agent_id="someone_else")
    assert agent == []
