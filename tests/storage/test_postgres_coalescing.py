"""PostgreSQL coalesces concurrent inserts: calls wait in a queue that up to
``INSERT_TRANSACTIONS`` flusher tasks drain. A call must never wait in a queue that no
flusher will look at again."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from memtrace_server.core.records import MemoryFilter, MemoryRecord, OrgRecord
from memtrace_server.storage import postgres
from memtrace_server.storage.postgres import PostgresStore

pytestmark = pytest.mark.anyio
NOW = time.time_ns()


def memory(n: int) -> MemoryRecord:
    return MemoryRecord(
        id=f"mem_{NOW + n:016x}{n:010x}",
        org_id="org_a",
        agent_id="agent_1",
        content=f"note {n}",
        time_ns=NOW + n,
    )


async def test_a_call_queued_as_the_last_flusher_ends_is_written(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call queued after a flusher's last look at the queue, but before its task is done,
    gets a flusher of its own (such a call once waited until the next call came: a
    flusher that had finished still counted until its task's done callbacks ran)."""
    monkeypatch.setattr(postgres, "INSERT_TRANSACTIONS", 1)
    store = PostgresStore(pg_url)
    await store.open()
    try:
        await store.create_org(OrgRecord("org_a", "A", NOW))
        real = store._run_chunk
        late: list[asyncio.Task[list[bool]]] = []

        async def run_chunk(chunk: Any) -> None:
            await real(chunk)
            if not late:
                # its first step runs after the flusher's last look at the queue and
                # before the flusher's task has run its done callbacks
                late.append(
                    asyncio.ensure_future(store.insert_memories("org_a", [memory(1)], None, NOW))
                )

        monkeypatch.setattr(store, "_run_chunk", run_chunk)
        assert await store.insert_memories("org_a", [memory(0)], None, NOW) == [True]
        assert await asyncio.wait_for(late[0], timeout=10) == [True]
        stored = await store.query_memories("org_a", MemoryFilter(limit=10))
        assert sorted(m.content for m in stored) == ["note 0", "note 1"]
    finally:
        await store.close()
