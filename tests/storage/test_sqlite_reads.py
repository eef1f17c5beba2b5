"""Where SQLite's reads run: a brief one (a key lookup, a list that walks its scope's index
to its page) on the caller's thread, anything that may read any number of rows first
(ranking, substrings, tags, metadata, types, counts) on the reader threads, so that it
never holds up the event loop."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from memtrace_server.core.records import MemoryFilter, MemoryRecord, OrgRecord
from memtrace_server.storage.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio
NOW = time.time_ns()
WINDOW = 3600 * 10**9


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "memtrace.db")
    await s.open()
    await s.create_org(OrgRecord("org_a", "A", NOW))
    await s.create_org(OrgRecord("org_b", "B", NOW))
    try:
        yield s
    finally:
        await s.close()


def mem(n: int, org: str = "org_a", **kw: Any) -> MemoryRecord:
    t = NOW - (100 - n) * 10**9
    fields: dict[str, Any] = {"agent_id": "agent_1", "session_id": "sess_1", "tags": ("t",)}
    fields.update(kw)
    return MemoryRecord(
        id=f"mem_{t:016x}{n:010x}", org_id=org, content=f"memory {n} refund", time_ns=t, **fields
    )


async def test_brief_reads_run_on_the_callers_thread_and_the_rest_on_the_readers(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.insert_memories("org_a", [mem(n) for n in range(20)], WINDOW, NOW)
    await store.insert_memories("org_b", [mem(50, "org_b")], WINDOW, NOW)
    ran_on: list[str] = []
    run_read = store._run_read

    def recorded(op: Any) -> Any:
        ran_on.append(threading.current_thread().name)
        return run_read(op)

    monkeypatch.setattr(store, "_run_read", recorded)
    caller = threading.current_thread().name

    async def thread_of(read: Any) -> tuple[str, Any]:
        ran_on.clear()
        answer = await read
        assert len(ran_on) == 1
        return ran_on[0], answer

    brief = {
        "get by id": store.get_memory("org_a", mem(3).id),
        "org": store.get_org("org_a"),
        "agent's page": store.query_memories("org_a", MemoryFilter(agent_id="agent_1", limit=5)),
        "session's page": store.query_memories(
            "org_a", MemoryFilter(session_id="sess_1", since_ns=NOW - 90 * 10**9, limit=101)
        ),
    }
    for name, read in brief.items():
        thread, answer = await thread_of(read)
        assert thread == caller, name
        assert answer, name
    thread, page = await thread_of(
        store.query_memories("org_a", MemoryFilter(agent_id="agent_1", limit=5))
    )
    assert [m.id for m in page] == [mem(n).id for n in range(19, 14, -1)]  # org_b's is newer

    long = {
        "ranked": MemoryFilter(query=("refund",)),
        "substring": MemoryFilter(content_contains="refund"),
        "tags": MemoryFilter(tags=("t",)),
        "metadata": MemoryFilter(metadata=(("plan", "pro"),)),
        "types": MemoryFilter(memory_types=("decision",)),
        "importance": MemoryFilter(min_importance=0.5),
        "key": MemoryFilter(key="k"),
        "deep page": MemoryFilter(agent_id="agent_1", limit=1000, offset=1500),
    }
    for name, flt in long.items():
        thread, _ = await thread_of(store.query_memories("org_a", flt))
        assert thread != caller and thread.startswith("memtrace-sqlite-reader"), name
    thread, count = await thread_of(store.count_memories("org_a", MemoryFilter()))
    assert thread != caller and count == 20


async def test_agent_stats_read_the_windows_hours_not_the_agents_history(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two agents with the same last day, one of them with 2,000 hours of history before it:
    their stats cost the same SQLite steps (the all-time tallies, the window's hours), and
    the old one's still count its history."""
    hour = 3600 * 10**9

    def hourly(agent: str, hours: range, serial: int) -> list[MemoryRecord]:
        return [
            MemoryRecord(
                id=f"mem_{NOW - h * hour:016x}{serial + h:010x}",
                org_id="org_a",
                agent_id=agent,
                content=f"{agent} hour {h}",
                time_ns=NOW - h * hour,
                event_type="error" if h % 2 else "observation",
            )
            for h in hours
        ]

    await store.insert_memories("org_a", hourly("newcomer", range(1, 25), 0), None, NOW)
    await store.insert_memories("org_a", hourly("old_timer", range(1, 2025), 10**6), None, NOW)
    since = NOW - 24 * hour + hour // 2
    await store.agent_stats("org_a", "newcomer", since)  # every connection of the read opened
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0

    for conn in store._connections:
        conn.set_progress_handler(step, 1)
    opened = store._connect

    def counted() -> Any:  # a reader thread may open its connection only now
        conn = opened()
        conn.set_progress_handler(step, 1)
        return conn

    monkeypatch.setattr(store, "_connect", counted)
    cost, stats = {}, {}
    for agent in ("newcomer", "old_timer"):
        steps = 0
        stats[agent] = await store.agent_stats("org_a", agent, since)
        cost[agent] = steps
    assert stats["old_timer"].memory_count == 2024
    assert stats["old_timer"].memories_24h == stats["newcomer"].memories_24h == 23
    assert stats["old_timer"].errors_24h == stats["newcomer"].errors_24h == 12
    assert cost["old_timer"] < 1.5 * cost["newcomer"], cost
