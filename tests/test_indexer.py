"""The background indexer embeds every memory that lacks an embedding, whatever its rid."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memtrace_server.core.records import MemoryFilter, MemoryRecord, OrgRecord
from memtrace_server.service.semantic import Embedder, Indexer
from memtrace_server.storage.routing import Stores
from memtrace_server.storage.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio
NOW = time.time_ns()


def memory(n: int) -> MemoryRecord:
    t = NOW + n
    return MemoryRecord(
        id=f"mem_{t:016x}{n:010x}", org_id="org_a", agent_id="a", content=f"note {n}", time_ns=t
    )


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Stores]:
    s = Stores(SQLiteStore(tmp_path / "idx.db", synchronous="NORMAL"))
    await s.open()
    await s.control.create_org(OrgRecord("org_a", "A", NOW))
    try:
        yield s
    finally:
        await s.close()


async def embedded_ids(stores: Stores) -> set[str]:
    store = await stores.tenant("org_a")
    return {m.id for m, _ in await store.embedded_memories("org_a", MemoryFilter(limit=100))}


async def test_a_memory_that_reuses_an_erased_rid_is_embedded(
    stores: Stores, embedder: Embedder
) -> None:
    store = await stores.tenant("org_a")
    indexer = Indexer(stores, embedder, batch=2)
    first = [memory(n) for n in range(5)]
    await store.insert_memories("org_a", first, None, NOW)
    while await indexer.step():
        pass
    assert await embedded_ids(stores) == {m.id for m in first}
    # the newest memories are erased, and SQLite gives their rids to the next ones
    for m in first[3:]:
        assert await store.delete_memory("org_a", m.id)
    assert await store.pending_embeddings("org_a", 10) == []
    late = memory(9)
    await store.insert_memories("org_a", [late], None, NOW)
    ((rid, mid, _),) = await store.pending_embeddings("org_a", 10)
    assert mid == late.id and rid <= 5  # a reused rid, behind anything already embedded
    # a vector computed for an erased memory never lands on the one that took its rid
    stale = (await embedder.encode_async(["note 4"]))[0]
    await store.put_embeddings("org_a", [(rid, first[4].id, stale)])
    assert late.id not in await embedded_ids(stores)
    assert await indexer.step() == 1
    assert late.id in await embedded_ids(stores) and await indexer.step() == 0
