"""The background indexer embeds every memory that lacks an embedding, whatever its rid."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from memtrace_server.core.records import OrgRecord
from memtrace_server.service.semantic import Embedder, Indexer
from memtrace_server.storage.base import Store


class RowidStore:
    """The three store calls the indexer makes, over SQLite's rowid rule: max + 1."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[str, bytes | None]] = {}

    def insert(self, content: str) -> int:
        rid = max(self.rows, default=0) + 1
        self.rows[rid] = (content, None)
        return rid

    async def list_orgs(self) -> list[OrgRecord]:
        return [OrgRecord("org_a", "A", 0)]

    async def pending_embeddings(
        self, org_id: str, after_rid: int, limit: int
    ) -> list[tuple[int, str]]:
        pending = [(r, c) for r, (c, v) in sorted(self.rows.items()) if r > after_rid and v is None]
        return pending[:limit]

    async def put_embeddings(self, org_id: str, rows: Sequence[tuple[int, bytes]]) -> None:
        for rid, vector in rows:
            if rid in self.rows:
                self.rows[rid] = (self.rows[rid][0], vector)


class FakeEmbedder:
    async def encode_async(self, texts: Sequence[str]) -> list[bytes]:
        return [t.encode() for t in texts]


def _drain(indexer: Indexer) -> None:
    async def run() -> None:
        while await indexer.step():
            pass

    asyncio.run(run())


def test_a_memory_that_reuses_an_erased_rid_is_embedded_without_a_restart() -> None:
    store = RowidStore()
    now = [0.0]
    indexer = Indexer(
        cast(Store, store), cast(Embedder, FakeEmbedder()), batch=2, clock=lambda: now[0]
    )
    for n in range(5):
        store.insert(f"memory {n}")
    _drain(indexer)
    assert all(v is not None for _, v in store.rows.values())
    del store.rows[5]  # the newest memory is erased...
    del store.rows[4]
    reused = store.insert("written after the erasure")  # ...and its rid is given again
    assert reused == 4
    _drain(indexer)
    assert store.rows[reused][1] == b"written after the erasure"
    # a rescan from the lowest rid happens at most every rescan_seconds
    store.rows[2] = ("re-written", None)
    _drain(indexer)
    assert store.rows[2][1] is None
    now[0] += indexer.rescan_seconds
    _drain(indexer)
    assert store.rows[2][1] == b"re-written"


def test_memories_after_the_cursor_are_embedded_at_once() -> None:
    store: Any = RowidStore()
    indexer = Indexer(cast(Store, store), cast(Embedder, FakeEmbedder()), clock=lambda: 0.0)
    store.insert("first")
    _drain(indexer)
    store.insert("second")
    _drain(indexer)
    assert [v for _, v in store.rows.values()] == [b"first", b"second"]
