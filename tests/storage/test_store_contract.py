"""One contract every store must pass: SQLite, a real PostgreSQL, and the routed store
(org A kept in a store of its own), all through ``Stores`` as the services use them."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from memtrace_server.core.records import (
    AgentDeletion,
    AgentRecord,
    ConsoleSessionRecord,
    MemoryFilter,
    MemoryRecord,
    OrgRecord,
    OrgStoreBinding,
    SessionRecord,
)
from memtrace_server.core.rules import stats_window_start
from memtrace_server.storage.base import DuplicateName, InvalidValue, MissingReference, StoreError
from memtrace_server.storage.registry import store_from_url
from memtrace_server.storage.routing import Stores
from memtrace_server.storage.secrets import seal

NOW = time.time_ns()
MIN = 60 * 10**9
WINDOW = 24 * 3600 * 10**9
MASTER_KEY = os.urandom(32)
CONTROL = {
    "create_org", "list_orgs", "get_org", "set_org_retention", "create_key", "list_keys",
    "revoke_key", "find_key", "set_org_store", "list_org_stores", "delete_org_store",
}  # fmt: skip
CONTROL |= {
    "create_console_session", "get_console_session", "touch_console_session",
    "delete_console_session", "purge_console_sessions",
}  # fmt: skip

pytestmark = pytest.mark.anyio


class Contract:
    """The store under test as the services see it: control calls go to the control
    store, tenant calls (org first) to the org's tenant store, resolved per call."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    async def delete_org(self, org_id: str) -> bool:
        return await self.stores.delete_org(org_id)

    def __getattr__(self, name: str) -> Any:
        if name in CONTROL or name in ("open", "close", "ping"):
            target = self.stores if name in ("open", "close", "ping") else self.stores.control
            return getattr(target, name)

        async def tenant_call(org_id: str, *args: Any, **kwargs: Any) -> Any:
            store = await self.stores.tenant(org_id)
            return await getattr(store, name)(org_id, *args, **kwargs)

        return tenant_call


@pytest.fixture(params=["sqlite", "sqlite-ingest", "postgres", "routed"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Contract]:
    """A factory of stores on one database, so a test can reopen it like a restart
    (``sqlite-ingest``: its inserts in a process of their own, as ``memtrace serve`` has)."""
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{(tmp_path / 'contract.db').as_posix()}"

    def make() -> Contract:
        def opener(other: str) -> Any:
            return store_from_url(other, synchronous="NORMAL")

        default = store_from_url(
            url, synchronous="NORMAL", ingest_process=request.param == "sqlite-ingest"
        )
        return Contract(Stores(default, master_key=MASTER_KEY, opener=opener))

    return make


@pytest.fixture
async def store(
    make_store: Callable[[], Contract], request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Contract]:
    s = make_store()
    await s.open()
    await s.create_org(OrgRecord("org_a", "A", NOW))
    await s.create_org(OrgRecord("org_b", "B", NOW + 1))
    if "routed" in request.node.callspec.id:
        own = f"sqlite:///{(tmp_path / 'org_a.db').as_posix()}"
        cipher, nonce = seal(MASTER_KEY, "org_a", own)
        await s.set_org_store(OrgStoreBinding("org_a", cipher, nonce, NOW))
        s.stores.forget_bindings()
    try:
        yield s
    finally:
        await s.close()


def mem(n: int, org: str = "org_a", **kw: Any) -> MemoryRecord:
    fields: dict[str, Any] = {
        "agent_id": "agent_1",
        "content": f"memory {n}",
        "time_ns": NOW - (100 - n) * MIN,
    }
    fields.update(kw)
    return MemoryRecord(id=f"mem_{fields['time_ns']:016x}{n:010x}", org_id=org, **fields)


async def test_an_orgs_row_is_kept_for_the_refresh_window(
    store: Contract, make_store: Callable[[], Contract]
) -> None:
    """``Stores.org`` (read by every memory read for the retention) keeps an org's row for
    ``refresh_seconds``: another process's change applies after it, this process's at once."""
    other = make_store()  # a second process on the same database
    await other.open()
    try:
        store.stores.refresh_seconds = 3600
        assert (await store.stores.org("org_a")) == OrgRecord("org_a", "A", NOW)
        await other.set_org_retention("org_a", 7)
        assert (await store.stores.org("org_a")) == OrgRecord("org_a", "A", NOW)  # still kept
        store.stores.refresh_seconds = 0
        assert (await store.stores.org("org_a")) == OrgRecord("org_a", "A", NOW, 7)
        store.stores.refresh_seconds = 3600
        await store.set_org_retention("org_a", 30)
        store.stores.forget_org("org_a")
        assert (await store.stores.org("org_a")) == OrgRecord("org_a", "A", NOW, 30)
        assert (await store.stores.org("org_b")) == OrgRecord("org_b", "B", NOW + 1)
        await store.delete_org("org_a")
        assert (await store.stores.org("org_a")) is None
    finally:
        await other.close()


async def test_orgs(store: Contract) -> None:
    assert [o.id for o in await store.list_orgs()] == ["org_a", "org_b"]
    assert (await store.get_org("org_a")) == OrgRecord("org_a", "A", NOW)
    assert await store.get_org("org_x") is None
    with pytest.raises(DuplicateName):
        await store.create_org(OrgRecord("org_a", "again", NOW))
    assert await store.usage("org_a") == {"agents": 0, "sessions": 0, "memories": 0}


async def test_keys(store: Contract) -> None:
    key = await store.create_key("org_a", "ci", "d" * 64, "mtk_abcdefgh", "read,write", NOW)
    assert key.permissions == frozenset({"read", "write"}) and key.org_id == "org_a"
    assert await store.find_key("d" * 64) == key
    assert await store.find_key("e" * 64) is None
    with pytest.raises(DuplicateName):
        await store.create_key("org_a", "ci", "f" * 64, "p", "read", NOW)
    other = await store.create_key("org_b", "ci", "f" * 64, "p", "read", NOW)  # names are per org
    with pytest.raises(LookupError):
        await store.create_key("org_missing", "x", "g" * 64, "p", "read", NOW)
    assert [k.name for k in await store.list_keys("org_a")] == ["ci"]
    assert not await store.revoke_key(key.id, "org_b")  # another org cannot revoke it
    assert await store.revoke_key(key.id, "org_a")
    assert await store.find_key("d" * 64) is None
    assert await store.revoke_key(other.id)
    assert not await store.revoke_key(other.id)


async def test_agents_and_sessions(store: Contract) -> None:
    explicit = AgentRecord(
        id="agent_x",
        org_id="org_a",
        name="planner",
        created_at_ns=NOW,
        description="plans",
        config={"depth": 2},
    )
    assert await store.register_agent("org_a", explicit) == explicit
    with pytest.raises(DuplicateName):
        await store.register_agent(
            "org_a", AgentRecord(id="agent_y", org_id="org_a", name="planner", created_at_ns=NOW)
        )
    implicit = AgentRecord(
        id="helper", org_id="org_a", name="helper", created_at_ns=NOW + 1, implicit=True
    )
    assert await store.ensure_agent("org_a", "helper", implicit) == implicit
    assert await store.ensure_agent("org_a", "planner", implicit) == explicit  # by name
    adopted = await store.register_agent(
        "org_a",
        AgentRecord(
            id="agent_z", org_id="org_a", name="helper", created_at_ns=NOW, description="d"
        ),
    )
    assert adopted.id == "helper" and adopted.description == "d" and not adopted.implicit
    assert await store.get_agent("org_a", "planner") == explicit
    assert await store.get_agent("org_b", "planner") is None
    assert [a.id for a in await store.list_agents("org_a")] == ["helper", "agent_x"]

    session = SessionRecord(
        id="sess_1",
        org_id="org_a",
        agent_id="agent_x",
        created_at_ns=NOW,
        updated_at_ns=NOW,
        metadata={"a": 1, "b": 2},
    )
    await store.create_session("org_a", session)
    with pytest.raises(LookupError):
        await store.create_session(
            "org_a",
            SessionRecord(
                id="sess_2", org_id="org_a", agent_id="ghost", created_at_ns=NOW, updated_at_ns=NOW
            ),
        )
    with pytest.raises(LookupError):  # org B cannot hang a session on org A's agent
        await store.create_session(
            "org_b",
            SessionRecord(
                id="sess_3",
                org_id="org_b",
                agent_id="agent_x",
                created_at_ns=NOW,
                updated_at_ns=NOW,
            ),
        )
    assert await store.get_session("org_a", "sess_1") == session
    assert await store.get_session("org_b", "sess_1") is None
    closed = await store.update_session("org_a", "sess_1", "closed", {"b": None, "c": 3}, NOW + 5)
    assert closed is not None and closed.status == "closed" and closed.closed_at_ns == NOW + 5
    assert closed.metadata == {"a": 1, "c": 3} and closed.updated_at_ns == NOW + 5
    reopened = await store.update_session("org_a", "sess_1", "active", None, NOW + 6)
    assert (
        reopened is not None
        and reopened.closed_at_ns is None
        and reopened.metadata == {"a": 1, "c": 3}
    )
    assert await store.update_session("org_b", "sess_1", "closed", None, NOW) is None
    assert [s.id for s in await store.list_sessions("org_a", "agent_x")] == ["sess_1"]
    assert await store.list_sessions("org_a", "helper") == []
    assert await store.list_sessions("org_b", None) == []
    assert await store.delete_agent("org_a", "agent_x") == AgentDeletion("has_sessions", 1)
    assert await store.delete_agent("org_b", "helper") == AgentDeletion("absent")
    assert await store.delete_agent("org_a", "helper") == AgentDeletion("deleted")
    usage = await store.usage("org_a")
    assert usage["agents"] == 1 and usage["sessions"] == 1


async def test_insert_dedup_and_get(store: Contract) -> None:
    a = mem(
        1,
        dedup_key="k1",
        tags=("x", "y"),
        metadata={"m": [1, "ü"]},
        importance=0.5,
        session_id="s1",
        parent_id="p",
        memory_type="decision",
        event_type="error",  # every field its own value: a read that swapped two would fail
        expires_at_ns=NOW + 3600 * 10**9,
    )
    assert await store.insert_memories("org_a", [a], WINDOW, NOW) == [True]
    assert await store.get_memory("org_a", a.id) == a
    assert await store.get_memory("org_a", "k1") == a
    assert (
        await store.get_memory("org_b", a.id) is None
        and await store.get_memory("org_b", "k1") is None
    )
    # same key in the window (also later in the same call) is skipped; another org is independent
    b, c = mem(2, dedup_key="k1"), mem(3, dedup_key="k2")
    d = mem(4, dedup_key="k2")
    assert await store.insert_memories("org_a", [b, c, d], WINDOW, NOW) == [False, True, False]
    assert await store.insert_memories("org_b", [mem(5, "org_b", dedup_key="k1")], WINDOW, NOW) == [
        True
    ]
    # outside the window, or without dedup, the same key is stored
    old = mem(6, dedup_key="k1", time_ns=NOW - 3 * WINDOW)
    assert await store.insert_memories("org_a", [old], WINDOW, NOW) == [True]
    assert await store.insert_memories("org_a", [mem(7, dedup_key="k1")], None, NOW) == [True]
    assert await store.usage("org_a") == {"agents": 0, "sessions": 0, "memories": 4}


async def test_a_batch_is_stored_value_for_value_and_in_order(store: Contract) -> None:
    """Every memory of a batch reads back as written, hostile tags and text included, and
    memories of one time read back in the order written (a backend that sends a batch's
    columns as arrays must keep each value and the order)."""
    hostile = ('a "quoted" tag', "comma, and {braces}", "back\\slash", "ü ß 字", "NULL", "")
    same = [
        replace(mem(10 + n, tags=(f"t{n}", "z", "a"), content=f"same {n}"), time_ns=NOW - MIN)
        for n in range(5)
    ]
    batch = [
        mem(1, tags=hostile, content='{"x": 1} \' ; DROP TABLE memories; --', importance=0.25),
        mem(2, tags=(), metadata={"k": "v'\""}, expires_at_ns=NOW + 10**12),
        *same,
    ]
    assert await store.insert_memories("org_a", batch, None, NOW) == [True] * len(batch)
    for m in batch:
        assert await store.get_memory("org_a", m.id) == m
    found = await store.query_memories("org_a", MemoryFilter(since_ns=NOW - 2 * MIN))
    assert [m.id for m in found] == [m.id for m in reversed(same)]


async def test_query_filters(store: Contract) -> None:
    rows = [
        mem(
            1, content="Deploy to staging", tags=("ops", "deploy"), session_id="s1", importance=0.2
        ),
        mem(
            2,
            content="deploy to production",
            tags=("ops",),
            session_id="s1",
            memory_type="decision",
            event_type="decision",
            importance=0.9,
        ),
        mem(3, content="smart home notes", tags=("smart",), agent_id="agent_2", event_type="note"),
        mem(4, content="100%_literal", tags=("art", "ops"), session_id="s2"),
        mem(5, org="org_b", content="deploy elsewhere", tags=("ops",)),
    ]
    await store.insert_memories("org_a", rows[:4], None, NOW)
    await store.insert_memories("org_b", rows[4:], None, NOW)

    async def ids(**kw: Any) -> list[str]:
        return [m.content for m in await store.query_memories("org_a", MemoryFilter(**kw))]

    assert await ids() == [
        "100%_literal",
        "smart home notes",
        "deploy to production",
        "Deploy to staging",
    ]
    assert await ids(ascending=True, limit=2) == ["Deploy to staging", "deploy to production"]
    assert await ids(limit=2, offset=1) == ["smart home notes", "deploy to production"]
    assert await ids(agent_id="agent_2") == ["smart home notes"]
    assert await ids(session_id="s1", memory_types=("decision",)) == ["deploy to production"]
    assert await ids(event_types=("note", "decision")) == [
        "smart home notes",
        "deploy to production",
    ]
    assert await ids(tags=("ops",)) == ["100%_literal", "deploy to production", "Deploy to staging"]
    assert await ids(tags=("ops", "deploy")) == ["Deploy to staging"]
    assert await ids(tags=("art",)) == ["100%_literal"]  # exact membership: not "smart"
    assert await ids(content_contains="deploy") == ["deploy to production"]  # case-sensitive
    assert await ids(content_contains="%_") == ["100%_literal"]  # literal, not a pattern
    assert await ids(min_importance=0.5) == ["deploy to production"]
    t2 = rows[1].time_ns
    assert await ids(since_ns=t2) == ["100%_literal", "smart home notes"]  # strict bounds
    assert await ids(until_ns=t2) == ["Deploy to staging"]
    assert await ids(since_ns=rows[0].time_ns, until_ns=rows[3].time_ns, tags=("ops",)) == [
        "deploy to production"
    ]


async def agent_with_session(store: Contract) -> None:
    """Agent ``agent_1`` of org A, with an open session ``s``."""
    await store.register_agent(
        "org_a", AgentRecord(id="agent_1", org_id="org_a", name="one", created_at_ns=NOW)
    )
    await store.create_session(
        "org_a",
        SessionRecord(
            id="s", org_id="org_a", agent_id="agent_1", created_at_ns=NOW, updated_at_ns=NOW
        ),
    )


async def test_stats(store: Contract) -> None:
    await agent_with_session(store)
    await store.insert_memories(
        "org_a",
        [
            mem(1, time_ns=NOW - 2 * WINDOW),
            mem(2, event_type="error", memory_type="session"),
            mem(3, memory_type="decision"),
            mem(4, org="org_b"),
        ][:3],
        None,
        NOW,
    )
    stats = await store.agent_stats("org_a", "agent_1", stats_window_start(NOW))
    assert (stats.memory_count, stats.memories_24h, stats.errors_24h) == (3, 2, 1)
    assert (stats.session_count, stats.active_sessions) == (1, 1)
    assert stats.memory_types == {"episodic": 1, "session": 1, "decision": 1}
    assert stats.last_active_at_ns == mem(3).time_ns
    empty = await store.agent_stats("org_b", "agent_1", stats_window_start(NOW))
    assert empty.memory_count == 0 and empty.memory_types == {} and empty.last_active_at_ns is None


async def test_last_activity_moves_forward_only_whoever_writes_at_once(
    make_store: Callable[[], Contract], store: Contract
) -> None:
    """An agent's and a session's last activity is the newest memory written to it, an
    older one written later leaving it where it is; and writers touching the same agents
    and sessions at once (three stores on one database, as three processes), in opposite
    orders and in calls of many memories, all succeed."""
    names = [f"agent_{i}" for i in range(8)]
    for i, name in enumerate(names):
        agent = AgentRecord(id=name, org_id="org_a", name=name, created_at_ns=NOW)
        await store.register_agent("org_a", agent)
        session = SessionRecord(
            id=f"s{i}", org_id="org_a", agent_id=name, created_at_ns=NOW, updated_at_ns=NOW
        )
        await store.create_session("org_a", session)

    def call(n: int, when: int, order: list[int]) -> list[MemoryRecord]:
        return [
            mem(1000 * n + i, agent_id=names[i], session_id=f"s{i}", time_ns=when + i)
            for i in order
        ]

    await store.insert_memories("org_a", call(1, NOW, list(range(8))), None, NOW)
    forward, backward = list(range(8)), list(reversed(range(8)))
    calls = (
        [  # newer memories, each call moving some agents forward, and older ones
            call(2 + n, NOW + (n % 7 + 1) * MIN, forward if n % 2 else backward[: 2 + n % 6])
            for n in range(40)
        ]
        + [call(50 + n, NOW - (n + 1) * MIN, backward) for n in range(20)]
    )
    newest = [max(m.time_ns for c in calls for m in c if m.agent_id == name) for name in names]
    others = [make_store(), make_store()]
    for other in others:
        await other.open()
    try:
        writers = [store, *others]
        answers = await asyncio.gather(
            *(writers[n % 3].insert_memories("org_a", c, None, NOW) for n, c in enumerate(calls))
        )
    finally:
        for other in others:
            await other.close()
    assert all(all(a) for a in answers)
    for i, name in enumerate(names):
        agent = await store.get_agent("org_a", name)
        session = await store.get_session("org_a", f"s{i}")
        assert agent is not None and session is not None
        assert agent.last_active_at_ns == session.last_active_at_ns == newest[i], name


async def test_content_contains_is_an_exact_substring_whatever_the_index(store: Contract) -> None:
    """Substrings inside words, across words, of any case and character, quotes and
    query syntax included; erased memories are not found again, nor another org's."""
    texts = [
        "The Customer asked: refund order #4412",
        'she said "AND" twice, then OR * NEAR(x)',
        "ünïcödé café crème brûlée",
        "customers and custodians",
        "a\tb tab",
    ]
    await store.insert_memories(
        "org_a", [mem(n, content=t) for n, t in enumerate(texts)], None, NOW
    )
    await store.insert_memories("org_b", [mem(9, org="org_b", content=texts[0])], None, NOW)

    async def found(needle: str) -> list[str]:
        flt = MemoryFilter(content_contains=needle, ascending=True)
        return [m.content for m in await store.query_memories("org_a", flt)]

    assert await found("ustom") == [texts[0], texts[3]]
    assert await found("Custom") == [texts[0]]  # case-sensitive
    assert await found("er asked: ref") == [texts[0]]
    assert await found('"AND"') == [texts[1]]
    assert await found("OR * NEAR(") == [texts[1]]
    assert await found("crème brû") == [texts[2]]
    assert await found("cu") == [texts[3]]  # two characters: no trigram
    assert await found("\tb") == [texts[4]]
    assert await found("refund order #4413") == []
    assert await store.count_memories("org_a", MemoryFilter(content_contains="ustom")) == 2
    await store.delete_memories("org_a", MemoryFilter(content_contains="Customer"))
    assert await found("ustom") == [texts[3]]
    await store.insert_memories("org_a", [mem(20, content="Customer again")], None, NOW)
    assert await found("ustom") == [texts[3], "Customer again"]


async def test_a_substring_page_newest_first_is_every_match_in_time_order(store: Contract) -> None:
    """Newest-first substring pages, however common the substring is among the scope's
    newest memories and in its history (a backend may read a common one in time order and
    a rare one through its index), of an org, an agent, a session and a window, with
    offsets, against every match listed here; another org's identical memories are its own."""
    contents = []
    for n in range(1000):  # n = 0 is the newest
        words = [f"entry{n}"]
        if n % 3 == 0:
            words.append("common")  # in a third of every stretch
        if n < 8 or n == 900:
            words.append("burst")  # in most of the newest, then once long before
        if n in (150, 600, 950):
            words.append("rarity")
        if n % 40 == 0:
            words.append("q7")  # two characters: no trigram
        words.append("%_\\" if n % 97 == 0 else "plain")
        contents.append(" ".join(words))
    records = [
        mem(
            n,
            content=content,
            agent_id=f"agent_{n % 2}",
            session_id=f"sess_{n % 5}",
            time_ns=NOW - (n + 1) * MIN,
        )
        for n, content in enumerate(contents)
    ]
    await store.insert_memories("org_a", records, None, NOW)
    copies = [
        mem(10_000 + n, org="org_b", content=m.content, time_ns=m.time_ns)
        for n, m in enumerate(records[:50])
    ]
    await store.insert_memories("org_b", copies, None, NOW)

    async def page(**kw: Any) -> list[str]:
        return [m.content for m in await store.query_memories("org_a", MemoryFilter(**kw))]

    def expected(needle: str, offset: int, limit: int, **scope: Any) -> list[str]:
        kept = [
            m.content
            for m in records  # newest first
            if needle in m.content
            and all(getattr(m, k) == v for k, v in scope.items() if k != "since_ns")
            and m.time_ns > scope.get("since_ns", 0)
        ]
        return kept[offset : offset + limit]

    for needle in ("common", "burst", "rarity", "q7", "%_\\", "entry99", "absent"):
        for offset, limit in ((0, 50), (0, 3), (5, 10), (300, 50)):
            got = await page(content_contains=needle, offset=offset, limit=limit)
            assert got == expected(needle, offset, limit), (needle, offset, limit)
        for scope in ({"agent_id": "agent_0"}, {"session_id": "sess_3"}):
            got = await page(content_contains=needle, limit=20, **scope)
            assert got == expected(needle, 0, 20, **scope), (needle, scope)
        since = NOW - 500 * MIN
        got = await page(content_contains=needle, limit=100, since_ns=since)
        assert got == expected(needle, 0, 100, since_ns=since), needle
    others = await store.query_memories("org_b", MemoryFilter(content_contains="burst", limit=50))
    assert [m.org_id for m in others] == ["org_b"] * 8


async def counted_stats(store: Contract, org: str, agent: str, since: int) -> tuple[Any, ...]:
    """Agent stats counted from the memories themselves, to hold the tallies against."""

    async def count(**kw: Any) -> int:
        return int(await store.count_memories(org, MemoryFilter(agent_id=agent, **kw)))

    types = {}
    for memory_type in ("episodic", "decision", "session", "entity"):
        if n := await count(memory_types=(memory_type,)):
            types[memory_type] = n
    window = (await count(since_ns=since), await count(since_ns=since, event_types=("error",)))
    return sum(types.values()), types, *window


async def stats_of(store: Contract, org: str, agent: str, since: int) -> tuple[Any, ...]:
    s = await store.agent_stats(org, agent, since)
    return s.memory_count, s.memory_types, s.memories_24h, s.errors_24h


async def test_counts_by_day_are_the_counts_of_each_day(store: Contract) -> None:
    """One scan counts a window's memories per day, as many counts of a day each would."""
    day = 24 * 60 * MIN
    start = NOW // day * day - 4 * day
    times = [start - 1, start, start + 5, start + day - 1, start + day, start + 3 * day + 7]
    times += [start + 5 * day, start + 5 * day + 1]  # after the window
    memories = [mem(n, time_ns=t, agent_id=f"agent_{n % 2}") for n, t in enumerate(times)]
    memories.append(mem(20, time_ns=start + 2 * day, key="k", superseded_by="mem_newer"))
    await store.insert_memories("org_a", memories, None, NOW)
    await store.insert_memories("org_b", [mem(30, "org_b", time_ns=start + 1)], None, NOW)
    for flt in (MemoryFilter(), MemoryFilter(agent_id="agent_0"), MemoryFilter(agent_id="x")):
        counts = await store.count_by_day("org_a", flt, start, 5)
        each = [
            await store.count_memories(
                "org_a", replace(flt, since_ns=start + n * day - 1, until_ns=start + (n + 1) * day)
            )
            for n in range(5)
        ]
        assert counts == each
    assert await store.count_by_day("org_a", MemoryFilter(), start, 5) == [3, 1, 0, 1, 0]
    assert await store.count_by_day("org_b", MemoryFilter(), start, 5) == [1, 0, 0, 0, 0]


async def test_stats_count_sessions_through_every_change(store: Contract) -> None:
    """Agent stats read an agent's session counts from ``agent_sessions``, kept by every
    operation that adds, closes, reopens or removes a session; held against the sessions."""

    async def counts(org: str = "org_a", agent: str = "agent_1") -> tuple[int, int]:
        stats = await store.agent_stats(org, agent, stats_window_start(NOW))
        listed = await store.list_sessions(org, agent)
        assert stats.session_count == len(listed)
        assert stats.active_sessions == sum(1 for s in listed if s.status == "active")
        return stats.session_count, stats.active_sessions

    def session(sid: str, org: str = "org_a", **kw: Any) -> SessionRecord:
        return SessionRecord(
            id=sid, org_id=org, agent_id="agent_1", created_at_ns=NOW, updated_at_ns=NOW, **kw
        )

    for org in ("org_a", "org_b"):  # the same agent id in another org
        await store.register_agent(org, AgentRecord("agent_1", org, "one", NOW))
    assert await counts() == (0, 0)
    for sid in ("s1", "s2", "s3"):
        await store.create_session("org_a", session(sid))
    await store.create_session("org_a", session("s4", status="closed"))
    await store.create_session("org_b", session("s1", "org_b"))
    assert await counts() == (4, 3) and await counts("org_b") == (1, 1)
    with pytest.raises(DuplicateName):
        await store.create_session("org_a", session("s1"))
    with pytest.raises(MissingReference):
        await store.create_session("org_a", replace(session("s9"), agent_id="nobody"))
    assert await counts() == (4, 3)
    await store.update_session("org_a", "s1", "closed", None, NOW + 1)
    await store.update_session("org_a", "s1", "closed", {"note": "again"}, NOW + 2)
    await store.update_session("org_a", "s4", "active", None, NOW + 3)
    await store.update_session("org_a", "s2", None, {"only": "metadata"}, NOW + 4)
    assert await counts() == (4, 3)
    assert await store.delete_session("org_a", "s2", cascade=False)
    assert not await store.delete_session("org_a", "s2", cascade=False)
    assert await counts() == (3, 2)
    assert await store.import_session("org_a", session("s5", status="closed"))
    assert not await store.import_session("org_a", session("s3"))
    assert await counts() == (4, 2) and await counts("org_b") == (1, 1)
    await store.erase_agent("org_a", AgentRecord("agent_1", "org_a", "one", NOW))
    assert await counts() == (0, 0) and await counts("org_b") == (1, 1)
    await store.register_agent("org_a", AgentRecord("agent_1", "org_a", "one", NOW))
    await store.create_session("org_a", session("s6"))
    assert await counts() == (1, 1)
    await store.erase_org("org_b")
    assert await counts("org_b") == (0, 0) and await counts() == (1, 1)


async def test_stats_follow_every_change(store: Contract) -> None:
    """Stats come from maintained tallies; after each kind of write and erase they equal
    a count of the table, for windows that start on, before and inside an hour."""
    hour = 3600 * 10**9
    base = (NOW // hour) * hour
    sinces = [base - 24 * hour, base - 24 * hour + 1, base - hour - 1, base - 7, NOW - WINDOW]
    sinces += [base - 24 * hour + 30 * MIN, -5 * hour - 1, -5 * hour, 0]
    await agent_with_session(store)

    async def check(step: str) -> None:
        for org, agent in (("org_a", "agent_1"), ("org_a", "agent_2"), ("org_b", "agent_1")):
            for since in sinces:
                got = await stats_of(store, org, agent, since)
                assert got == await counted_stats(store, org, agent, since), (step, org, since)

    types = ("episodic", "decision", "session")
    events = ("general", "error", "action")
    times = [base - 30 * hour, base - 24 * hour, base - 24 * hour + 1, base - hour - 1, base - 7]
    times += [base, NOW, base - 5 * hour - 2, -6 * hour, -5 * hour]
    batch = [
        mem(
            n,
            agent_id=("agent_1", "agent_2")[n % 2],
            time_ns=times[n % len(times)] + n,
            memory_type=types[n % 3],
            event_type=events[n % 4 % 3],
            session_id="s" if n % 5 == 0 else "",
            expires_at_ns=NOW - 1 if n % 7 == 0 else None,
        )
        for n in range(1, 41)
    ]
    await store.insert_memories("org_a", batch, None, NOW)
    await store.insert_memories("org_b", [mem(1, org="org_b", event_type="error")], None, NOW)
    await check("inserted")

    keyed = [
        mem(100 + n, key="plan", time_ns=NOW - (10 - n) * MIN, event_type=events[n % 2])
        for n in range(4)
    ]
    await store.insert_memories("org_a", keyed[:2], None, NOW)  # one batch: a chain
    await store.insert_memories("org_a", [keyed[3]], None, NOW)  # supersedes a stored one
    await store.insert_memories("org_a", [keyed[2]], None, NOW)  # a backfill: history at once
    await check("keyed")

    assert await store.delete_memory("org_a", keyed[3].id)  # the previous version returns
    await check("current version erased")
    await store.delete_memories("org_a", MemoryFilter(memory_types=("decision",)))
    await check("erased by filter")
    assert await store.delete_session("org_a", "s", True)
    await check("session cascade")
    stores = [await store.stores.tenant(org) for org in ("org_a", "org_b")]
    for tenant in {id(t): t for t in stores}.values():
        await tenant.purge_expired(NOW, {"org_a": base - 24 * hour})
    await check("expired and retention")
    await store.import_memories(
        "org_a", [mem(200, time_ns=base + 1, event_type="error"), batch[1]], NOW
    )
    await check("imported")
    agent_2 = AgentRecord(id="agent_2", org_id="org_a", name="agent_2", created_at_ns=NOW)
    await store.erase_agent("org_a", agent_2)
    await check("agent erased")
    assert (await stats_of(store, "org_a", "agent_2", NOW - WINDOW))[0] == 0
    assert (await stats_of(store, "org_b", "agent_1", NOW - WINDOW))[0] == 1  # untouched


async def test_delete_org_removes_everything(store: Contract) -> None:
    await store.create_key("org_a", "k", "a" * 64, "p", "read", NOW)
    await store.ensure_agent(
        "org_a", "bot", AgentRecord(id="bot", org_id="org_a", name="bot", created_at_ns=NOW)
    )
    await store.create_session(
        "org_a",
        SessionRecord(id="s", org_id="org_a", agent_id="bot", created_at_ns=NOW, updated_at_ns=NOW),
    )
    await store.insert_memories("org_a", [mem(1, tags=("t",))], None, NOW)
    await store.insert_memories("org_b", [mem(2, org="org_b", tags=("t",))], None, NOW)
    assert await store.delete_org("org_a")
    assert not await store.delete_org("org_a")
    assert await store.usage("org_a") == {"agents": 0, "sessions": 0, "memories": 0}
    assert await store.query_memories("org_a", MemoryFilter(tags=("t",))) == []
    assert len(await store.query_memories("org_b", MemoryFilter(tags=("t",)))) == 1


async def test_concurrent_duplicates_store_exactly_one(
    make_store: Callable[[], Contract], store: Contract
) -> None:
    second = make_store()  # another connection set, as another process would have
    await second.open()
    try:
        same = [
            mem(i, dedup_key="race", content="same thought", time_ns=NOW + i) for i in range(24)
        ]
        results = await asyncio.gather(
            *(
                (store if i % 2 else second).insert_memories("org_a", [m], WINDOW, NOW)
                for i, m in enumerate(same)
            )
        )
        assert sorted(r[0] for r in results) == [False] * 23 + [True]
        many = [mem(100 + i, dedup_key=f"k{i}", time_ns=NOW + 1000 + i) for i in range(40)]
        await asyncio.gather(
            *(
                (store if i % 2 else second).insert_memories("org_a", [m], WINDOW, NOW)
                for i, m in enumerate(many)
            )
        )
        assert len(await store.query_memories("org_a", MemoryFilter(limit=1000))) == 41
    finally:
        await second.close()


async def test_data_survives_a_restart(make_store: Callable[[], Contract], store: Contract) -> None:
    await store.insert_memories("org_a", [mem(1, tags=("keep",))], WINDOW, NOW)
    await store.create_key("org_a", "k", "b" * 64, "p", "read", NOW)
    await store.close()
    reopened = make_store()
    await reopened.open()  # migrations run again and change nothing
    try:
        assert [
            m.tags for m in await reopened.query_memories("org_a", MemoryFilter(tags=("keep",)))
        ] == [("keep",)]
        assert (await reopened.find_key("b" * 64)) is not None
    finally:
        await reopened.close()
    await store.open()  # so the fixture can close it


async def test_closed_store_raises_store_error(make_store: Callable[[], Contract]) -> None:
    s = make_store()
    with pytest.raises(StoreError):
        await s.ping()


async def test_a_memory_is_found_by_the_words_of_the_one_before_it(store: Contract) -> None:
    def at(n: int, t: int, content: str, session: str = "s1") -> MemoryRecord:
        return mem(n, session_id=session, content=content, time_ns=NOW + t)

    async def found(word: str) -> set[str]:
        flt = MemoryFilter(query=(word,), limit=50)
        return {m.content for m in await store.query_memories("org_a", flt)}

    q = at(1, 10, "where did I leave the passport")
    a = at(2, 20, "top drawer of the desk")
    other = at(3, 15, "water the garden", session="s2")
    assert await store.insert_memories("org_a", [q, a, other], None, NOW) == [True] * 3
    assert await found("passport") == {q.content, a.content}  # a answers q
    r = at(4, 30, "thanks, found it")
    await store.insert_memories("org_a", [r], None, NOW)
    assert await found("drawer") == {a.content, r.content}
    # backfills take the memory before them in time, not the last one written
    first = at(5, 5, "booked flights to lisbon")
    between = at(6, 25, "the blue one")
    await store.insert_memories("org_a", [first, between], None, NOW)
    assert await found("lisbon") == {first.content}
    assert await found("drawer") == {a.content, r.content, between.content}
    assert await found("garden") == {other.content}


# keyed memories: facts that change


def fact(n: int, key: str, content: str, t: int, org: str = "org_a", **kw: Any) -> MemoryRecord:
    kw.setdefault("time_ns", NOW + t * MIN)
    return mem(n, org=org, key=key, content=content, **kw)


async def current_and_history(
    store: Contract, org: str = "org_a", **kw: Any
) -> tuple[list[str], list[str]]:
    now = await store.query_memories(org, MemoryFilter(**kw))
    every = await store.query_memories(org, MemoryFilter(include_superseded=True, **kw))
    return [m.content for m in now], [m.content for m in every]


async def test_a_keyed_memory_supersedes_the_current_version(store: Contract) -> None:
    pro = fact(1, "plan", "customer is on Pro", 1, tags=("billing",))
    await store.insert_memories("org_a", [pro], WINDOW, NOW)
    enterprise = fact(2, "plan", "customer moved to Enterprise", 2, tags=("billing",))
    await store.insert_memories("org_a", [enterprise], WINDOW, NOW + 7)
    assert await current_and_history(store) == (
        ["customer moved to Enterprise"],
        ["customer moved to Enterprise", "customer is on Pro"],
    )
    old = await store.get_memory("org_a", pro.id)  # by id, history stays readable
    assert (
        old is not None and old.superseded_by == enterprise.id and old.superseded_at_ns == NOW + 7
    )
    new = await store.get_memory("org_a", enterprise.id)
    assert new is not None and new.key == "plan" and not new.superseded_by
    # hidden everywhere a filter reads: tags, key, ranked search, counts, stats
    assert [m.id for m in await store.query_memories("org_a", MemoryFilter(tags=("billing",)))] == [
        enterprise.id
    ]
    assert [m.id for m in await store.query_memories("org_a", MemoryFilter(key="plan"))] == [
        enterprise.id
    ]
    ranked = await store.query_memories("org_a", MemoryFilter(query=("customer",)))
    assert [m.id for m in ranked] == [enterprise.id]
    assert await store.count_memories("org_a", MemoryFilter()) == 1
    stats = await store.agent_stats("org_a", "agent_1", stats_window_start(NOW))
    assert stats.memory_count == 1
    # a key is per agent: another agent's "plan" is its own fact
    other = fact(3, "plan", "other agent's plan", 3, agent_id="agent_2")
    await store.insert_memories("org_a", [other], WINDOW, NOW)
    assert (await store.get_memory("org_a", enterprise.id)).superseded_by == ""  # type: ignore[union-attr]


async def test_versions_in_a_batch_apply_in_order_and_backfills_become_history(
    store: Contract,
) -> None:
    batch = [fact(i, "status", f"status {i}", i) for i in (1, 2, 3)]
    assert await store.insert_memories("org_a", batch, WINDOW, NOW) == [True] * 3
    got = {
        m.content: m
        for m in await store.query_memories("org_a", MemoryFilter(include_superseded=True))
    }
    assert got["status 1"].superseded_by == batch[1].id
    assert got["status 2"].superseded_by == batch[2].id
    assert not got["status 3"].superseded_by
    # an older version written later (a backfill) is history at once: the newest stays current
    backfill = fact(9, "status", "status 0", 0)
    await store.insert_memories("org_a", [backfill], WINDOW, NOW)
    assert (await current_and_history(store))[0] == ["status 3"]
    assert (await store.get_memory("org_a", backfill.id)).superseded_by == batch[2].id  # type: ignore[union-attr]
    # the same content under the same key inside the window is a duplicate: no new version
    again = fact(10, "status", "status 3", 4)
    again = replace(again, dedup_key="d3")
    first = replace(fact(11, "status", "status 4", 5), dedup_key="d3")
    assert await store.insert_memories("org_a", [first], WINDOW, NOW) == [True]
    assert await store.insert_memories("org_a", [again], WINDOW, NOW) == [False]
    assert len((await current_and_history(store))[1]) == 5


async def test_erasing_the_current_version_brings_back_the_previous(store: Contract) -> None:
    versions = [fact(i, "city", f"lives in city {i}", i) for i in (1, 2, 3)]
    for v in versions:
        await store.insert_memories("org_a", [v], WINDOW, NOW)
    assert await store.delete_memory("org_a", versions[2].id)
    assert (await current_and_history(store))[0] == ["lives in city 2"]
    # erase by filter without include_superseded takes the current version only
    assert await store.delete_memories("org_a", MemoryFilter(key="city")) == 1
    assert await current_and_history(store) == (["lives in city 1"], ["lives in city 1"])
    await store.insert_memories("org_a", [fact(4, "city", "lives in city 4", 4)], WINDOW, NOW)
    erased = await store.delete_memories("org_a", MemoryFilter(key="city", include_superseded=True))
    assert erased == 2 and await current_and_history(store) == ([], [])


async def test_keys_and_versions_never_cross_orgs(store: Contract) -> None:
    await store.insert_memories("org_a", [fact(1, "plan", "A's plan", 1)], WINDOW, NOW)
    await store.insert_memories("org_b", [fact(2, "plan", "B's plan", 2, org="org_b")], WINDOW, NOW)
    assert await current_and_history(store, "org_a") == (["A's plan"], ["A's plan"])
    assert await current_and_history(store, "org_b") == (["B's plan"], ["B's plan"])
    assert (
        await store.delete_memories("org_b", MemoryFilter(key="plan", include_superseded=True)) == 1
    )
    assert await current_and_history(store, "org_a") == (["A's plan"], ["A's plan"])


async def test_metadata_filters_match_exact_json_values(store: Contract) -> None:
    rows = [
        mem(1, content="s", metadata={"plan": "pro", "n": 1, "ok": True, "gone": None}),
        mem(2, content="f", metadata={"plan": "Pro", "n": 1.0, "ok": False, "nested": {"a": 1}}),
        mem(3, content="i", metadata={"plan": "pro", "n": 2, "ok": 1}),
        mem(4, content="none"),
        mem(5, org="org_b", content="b", metadata={"plan": "pro"}),
    ]
    await store.insert_memories("org_a", rows[:4], None, NOW)
    await store.insert_memories("org_b", rows[4:], None, NOW)

    async def contents(**fields: Any) -> list[str]:
        flt = MemoryFilter(metadata=tuple(fields.items()), ascending=True)
        return [m.content for m in await store.query_memories("org_a", flt)]

    assert await contents(plan="pro") == ["s", "i"]  # exact, case-sensitive, this org only
    assert await contents(n=1) == ["s", "f"]  # 1 and 1.0 are the same JSON number
    assert await contents(ok=True) == ["s"]  # true is not 1
    assert await contents(ok=1) == ["i"]
    assert await contents(ok=False) == ["f"]
    assert await contents(gone=None) == ["s"]  # null matches null, not a missing field
    assert await contents(plan="pro", n=2) == ["i"]  # every field is required
    assert await contents(plan="enterprise") == []
    assert await store.count_memories("org_a", MemoryFilter(metadata=(("plan", "pro"),))) == 2
    assert await store.delete_memories("org_a", MemoryFilter(metadata=(("n", 2),))) == 1
    assert await contents(plan="pro") == ["s"]


async def test_concurrent_writers_on_one_key_leave_one_current_version(
    make_store: Callable[[], Contract], store: Contract
) -> None:
    second = make_store()  # another connection set, as another process would have
    await second.open()
    try:
        writes = [fact(i, "mood", f"mood {i}", 0, time_ns=NOW + i) for i in range(32)]
        await asyncio.gather(
            *(
                (store if i % 2 else second).insert_memories("org_a", [m], WINDOW, NOW)
                for i, m in enumerate(writes)
            )
        )
        now, every = await current_and_history(store, key="mood")
        assert now == ["mood 31"] and len(every) == 32  # the newest is current
        history = await store.query_memories(
            "org_a", MemoryFilter(key="mood", include_superseded=True)
        )
        assert [m.time_ns for m in history] == sorted((m.time_ns for m in history), reverse=True)
        assert sum(1 for m in history if not m.superseded_by) == 1
    finally:
        await second.close()


async def test_export_and_import_carry_keys_and_history(store: Contract) -> None:
    await store.insert_memories(
        "org_a", [fact(1, "tz", "UTC", 1), fact(2, "tz", "CET", 2)], WINDOW, NOW
    )
    page = await store.export_memories("org_a", None, None, 100)
    exported = [m for _, m in page]
    assert [(m.key, bool(m.superseded_by)) for m in exported] == [("tz", True), ("tz", False)]
    everything = MemoryFilter(agent_id="agent_1", include_superseded=True)
    assert await store.delete_memories("org_a", everything) == 2
    assert await store.import_memories("org_a", exported, NOW) == 2  # as into a new store
    assert await current_and_history(store) == (["CET"], ["CET", "UTC"])
    assert [m for _, m in await store.export_memories("org_a", None, None, 100)] == exported


async def test_an_imported_current_version_competes_with_the_stored_one(store: Contract) -> None:
    await store.insert_memories("org_a", [fact(1, "tz", "stored, older", 1)], WINDOW, NOW)
    newer = fact(2, "tz", "imported, newer", 2)
    older = fact(3, "tz", "imported, oldest", 0)
    assert await store.import_memories("org_a", [newer], NOW) == 1
    assert (await current_and_history(store))[0] == ["imported, newer"]
    assert await store.import_memories("org_a", [older], NOW) == 1  # history at once
    assert await current_and_history(store) == (
        ["imported, newer"],
        ["imported, newer", "stored, older", "imported, oldest"],
    )


async def test_console_sessions(store: Contract) -> None:
    first = ConsoleSessionRecord("t" * 64, "org_a", "k" * 64, "csrf1", NOW, NOW)
    second = ConsoleSessionRecord("u" * 64, "org_b", "j" * 64, "csrf2", NOW, NOW + MIN)
    await store.create_console_session(first)
    await store.create_console_session(second)
    with pytest.raises(DuplicateName):
        await store.create_console_session(first)
    assert await store.get_console_session("t" * 64) == first
    assert await store.get_console_session("x" * 64) is None
    assert await store.touch_console_session("t" * 64, NOW + 2 * MIN)
    assert not await store.touch_console_session("x" * 64, NOW)
    touched = await store.get_console_session("t" * 64)
    assert touched is not None and touched.last_seen_at_ns == NOW + 2 * MIN
    # idle since before NOW + 90 s: only the second (last seen NOW + 1 min)
    assert await store.purge_console_sessions(NOW + MIN + MIN // 2) == 1
    assert await store.get_console_session("u" * 64) is None
    assert await store.delete_console_session("t" * 64)
    assert not await store.delete_console_session("t" * 64)
    assert await store.get_console_session("t" * 64) is None


async def test_common_and_rare_tags_and_metadata_give_the_same_answers(store: Contract) -> None:
    # Enough rows that a value is common (a store may then probe it per row rather than
    # walk its index): every path must answer exactly what the filter says.
    rows = [
        mem(
            n,
            content=f"row {n}",
            time_ns=NOW - (2000 - n) * 10**9,
            tags=("common", *(("rare",) if n % 97 == 0 else ()), *(("odd",) if n % 2 else ())),
            metadata={"plan": "pro" if n % 3 else "free", "user": f"u{n % 250}"},
            agent_id="agent_1" if n % 5 else "agent_2",
        )
        for n in range(1200)
    ]
    await store.insert_memories("org_a", rows, None, NOW)

    def expected(pick: Any, ascending: bool = False, limit: int = 100) -> list[str]:
        chosen = sorted(
            (m for m in rows if pick(m)), key=lambda m: m.time_ns, reverse=not ascending
        )
        return [m.id for m in chosen][:limit]

    async def got(**kw: Any) -> list[str]:
        return [m.id for m in await store.query_memories("org_a", MemoryFilter(**kw))]

    def has(m: MemoryRecord, *tags: str) -> bool:
        return all(t in m.tags for t in tags)

    window = NOW - 1500 * 10**9
    assert await got(tags=("common",)) == expected(lambda m: has(m, "common"))
    assert await got(tags=("common", "rare")) == expected(lambda m: has(m, "common", "rare"))
    assert await got(tags=("common", "odd"), since_ns=window, ascending=True) == expected(
        lambda m: has(m, "common", "odd") and m.time_ns > window, ascending=True
    )
    pro = (("plan", "pro"),)
    assert await got(metadata=pro, agent_id="agent_2") == expected(
        lambda m: m.metadata["plan"] == "pro" and m.agent_id == "agent_2"
    )
    assert await got(metadata=(*pro, ("user", "u7")), tags=("odd",)) == expected(
        lambda m: m.metadata["plan"] == "pro" and m.metadata["user"] == "u7" and has(m, "odd")
    )
    flt = MemoryFilter(tags=("common", "odd"), metadata=pro)
    assert await store.count_memories("org_a", flt) == len(
        [m for m in rows if has(m, "common", "odd") and m.metadata["plan"] == "pro"]
    )
    assert await store.count_memories("org_a", MemoryFilter(tags=("rare",))) == 13


async def test_tallies_are_built_from_a_store_that_had_none(tmp_path: Path) -> None:
    """The migrations that add tallies and session counts count what an older store
    already holds."""
    import sqlite3

    db = tmp_path / "old.db"
    store = store_from_url(f"sqlite:///{db.as_posix()}")
    await store.open()
    await store.create_org(OrgRecord("org_a", "A", NOW))
    await store.register_agent("org_a", AgentRecord("agent_1", "org_a", "one", NOW))
    for sid, status in (("s1", "active"), ("s2", "closed"), ("s3", "active")):
        await store.create_session(
            "org_a", SessionRecord(sid, "org_a", "agent_1", NOW, NOW, status=status)
        )
    kinds = ("episodic", "decision")
    batch = [
        mem(n, memory_type=kinds[n % 2], event_type=("error", "general")[n % 3 > 0])
        for n in range(30)
    ]
    await store.insert_memories("org_a", batch, None, NOW)
    await store.insert_memories("org_a", [mem(40, key="k"), mem(41, key="k")], None, NOW)
    before = await store.agent_stats("org_a", "agent_1", NOW - WINDOW)
    await store.close()
    with sqlite3.connect(db) as conn:  # as the store was before the tallies' migration
        assert conn.execute("SELECT count(*) FROM agent_tallies").fetchone()[0] > 0
        conn.execute("DROP TABLE agent_tallies")
        conn.execute("DROP TABLE agent_sessions")
        # 0010_agent_tallies and 0013_agent_sessions
        conn.execute("DELETE FROM schema_migrations WHERE version IN (10, 13)")
    reopened = store_from_url(f"sqlite:///{db.as_posix()}")
    await reopened.open()
    try:
        after = await reopened.agent_stats("org_a", "agent_1", NOW - WINDOW)
        assert after == before and after.memory_count == 31
        assert (after.session_count, after.active_sessions) == (3, 2)
    finally:
        await reopened.close()


# concurrent calls: a store may coalesce them, but each gets the answer of its own


def _calls(org: str, tag: str) -> list[MemoryRecord]:
    """64 single-memory calls: unique ones in a few sessions, three runs of duplicates, a
    duplicate of a stored memory, keyed pairs (a newer and a backfilled write)."""
    base = NOW + 10 * MIN

    def one(n: int, **kw: Any) -> MemoryRecord:
        kw.setdefault("time_ns", base + n * 10**6)
        kw.setdefault("dedup_key", f"{tag}-{n}")
        kw.setdefault("content", f"{tag} note {n} word{n}")
        return mem(n, org, **kw)

    calls = [one(n, session_id=f"s{n % 5}") for n in range(48)]
    for n, run in zip(range(48, 57), ("a", "b", "c") * 3, strict=True):
        calls.append(one(n, dedup_key=f"{tag}-dup-{run}", content=f"{tag} dup {run}"))
    calls.append(one(57, dedup_key=f"{tag}-stored", content=f"{tag} again"))
    calls.append(one(58, key="plan", content=f"{tag} plan pro", time_ns=base + MIN))
    calls.append(one(59, key="plan", content=f"{tag} plan team", time_ns=base + 2 * MIN))
    calls.append(one(60, key="tz", content=f"{tag} tz CET", time_ns=base + 2 * MIN))
    calls.append(one(61, key="tz", content=f"{tag} tz UTC, backfilled", time_ns=base + MIN))
    calls.append(one(62, session_id="s1", content=f"{tag} late in s1", time_ns=base + 3 * MIN))
    calls.append(one(63, session_id="s1", content=f"{tag} early in s1", time_ns=base - MIN))
    return calls


async def _state(store: Contract, org: str) -> list[tuple[Any, ...]]:
    """What a reader sees of an org's memories, with ids replaced by contents."""
    every = await store.query_memories(org, MemoryFilter(include_superseded=True, limit=1000))
    content = {m.id: m.content for m in every}
    return sorted(
        (m.content, m.time_ns, m.session_id, m.key, content.get(m.superseded_by)) for m in every
    )


async def _one_by_one(
    make_store: Callable[[], Contract],
    org: str,
    calls: list[MemoryRecord],
    stored: MemoryRecord | None,
) -> tuple[list[Any], list[tuple[Any, ...]]]:
    """The answers and the state of the same calls run one after another, in an org of
    their own (``org`` + "_seq", its ids prefixed: ids are unique per store)."""
    twin = make_store()
    await twin.open()
    seq = org + "_seq"
    try:
        await twin.create_org(OrgRecord(seq, "sequential", NOW))
        if stored is not None:
            await twin.insert_memories(seq, [replace(stored, id="z" + stored.id)], WINDOW, NOW)
        answers: list[Any] = []
        for m in calls:
            try:
                answers.append(
                    await twin.insert_memories(seq, [replace(m, id="z" + m.id)], WINDOW, NOW)
                )
            except Exception as exc:
                answers.append(exc)
        return answers, await _state(twin, seq)
    finally:
        await twin.close()


def _answers(results: list[Any]) -> list[Any]:
    return [type(r) if isinstance(r, Exception) else r for r in results]


async def test_concurrent_creates_each_get_their_own_answer_as_if_run_in_turn(
    make_store: Callable[[], Contract], store: Contract
) -> None:
    stored = mem(200, dedup_key="a-stored", content="a stored", time_ns=NOW + 9 * MIN)
    assert await store.insert_memories("org_a", [stored], WINDOW, NOW) == [True]
    calls = _calls("org_a", "a")
    # Two calls the store itself refuses, one on each backend: an id already taken (SQLite
    # keeps ids unique) and a NUL character (PostgreSQL text cannot hold it).
    calls.insert(20, replace(mem(300), id=stored.id, content="a taken id", dedup_key="x1"))
    calls.insert(40, mem(301, content="a nul \x00", dedup_key="x2"))
    answers = await asyncio.gather(
        *(store.insert_memories("org_a", [m], WINDOW, NOW) for m in calls),
        return_exceptions=True,
    )
    expected, state = await _one_by_one(make_store, "org_a", calls, stored)
    assert _answers(answers) == _answers(expected)
    assert await _state(store, "org_a") == state
    failed = [i for i, a in enumerate(answers) if isinstance(a, Exception)]
    assert len(failed) == 1 and failed[0] in (20, 40)
    assert isinstance(answers[failed[0]], DuplicateName | InvalidValue)
    flags = [a[0] for i, a in enumerate(answers) if i not in (20, 40)]
    assert flags[:48] == [True] * 48
    assert flags[48:57] == [True] * 3 + [False] * 6  # the first of each run wins
    assert flags[57] is False  # a duplicate of the stored memory
    assert (await current_and_history(store, key="plan"))[0] == ["a plan team"]
    assert (await current_and_history(store, key="tz"))[0] == ["a tz CET"]
    # neighbours: the late memory borrows the words of the one before it in s1
    found = await store.query_memories("org_a", MemoryFilter(query=("word46",), limit=10))
    assert {m.content for m in found} == {"a note 46 word46", "a late in s1"}


async def test_concurrent_creates_of_two_orgs_never_meet(
    make_store: Callable[[], Contract], store: Contract
) -> None:
    """The same dedup keys, sessions and memory keys in two orgs at once: each org's
    outcome is its own sequential run, and neither sees the other's memories."""
    stored = mem(200, dedup_key="t-stored", content="t stored", time_ns=NOW + 9 * MIN)
    twins = {"org_a": _calls("org_a", "t"), "org_b": _calls("org_b", "t")}
    # org B: other ids and words, the same dedup keys, sessions and memory keys
    twins["org_b"] = [
        replace(m, id="b" + m.id[1:], content="u" + m.content[1:]) for m in twins["org_b"]
    ]
    await store.insert_memories("org_a", [stored], WINDOW, NOW)
    interleaved = [
        (org, m)
        for pair in zip(*twins.values(), strict=True)
        for org, m in zip(twins, pair, strict=True)
    ]
    answers = await asyncio.gather(
        *(store.insert_memories(org, [m], WINDOW, NOW) for org, m in interleaved)
    )
    by_org = {
        org: [a for (o, _), a in zip(interleaved, answers, strict=True) if o == org]
        for org in twins
    }
    expected_a, state_a = await _one_by_one(make_store, "org_a", twins["org_a"], stored)
    assert by_org["org_a"] == expected_a and await _state(store, "org_a") == state_a
    expected_b, state_b = await _one_by_one(make_store, "org_b", twins["org_b"], None)
    assert by_org["org_b"] == expected_b and await _state(store, "org_b") == state_b
    assert expected_b[57] == [True]  # org A's stored memory is no duplicate in org B
    assert [m.content for m in await store.query_memories("org_b", MemoryFilter(key="plan"))] == [
        "u plan team"
    ]
    for org, words in (("org_a", "t"), ("org_b", "u")):  # neighbours within the org only
        found = await store.query_memories(org, MemoryFilter(query=("word46",), limit=10))
        assert {m.content for m in found} == {f"{words} note 46 word46", f"{words} late in s1"}
