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
def anyio_backend() -> str:
    return "asyncio"


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
