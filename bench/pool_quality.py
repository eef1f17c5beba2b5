"""Ranked search quality where a busy agent's queries are ranked over a pool: LoCoMo among
distractors, on SQLite (or PostgreSQL: the tests' throwaway server).

    python bench/pool_quality.py [--data ../shared/data/locomo/locomo-dev.json] [--copies 8]
                                 [--postgres]

``bench/locomo.py`` measures ranking on small histories, which both stores rank whole. An
agent with tens of thousands of memories and common query words is ranked over a pool of
recent matches instead (``SQLiteStore.ranked``, ``PostgresStore.ranked``), and that is the
ranking to measure here. Each LoCoMo conversation is one agent's history, as in ``bench/locomo.py``,
and each agent also holds ``--copies`` copies of the other conversations' turns, their
times spread over the same months as its own (distractors: other speakers, other sessions;
they never count as evidence). Every question of categories 1-4 is then searched twice on
the same store, through the store in this process: as the server ranks it, and with every
match ranked (the store's bounds lifted: SQLite's ``bm25()`` over all of them, PostgreSQL's
``ts_rank`` over a pool as large as the matches). It prints R@5/10/20 of both, how many of
the exact top 10 the served top 10 holds, how many questions SQLite ranked over a pool, and
the latency of both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from locomo import DEFAULT_DATA, KS, turns
from run import start_postgres

import memtrace_server.storage.postgres as postgres_store
import memtrace_server.storage.sqlite as sqlite_store
from memtrace_server.core.ids import new_memory_id
from memtrace_server.core.records import MemoryFilter, MemoryRecord, OrgRecord
from memtrace_server.core.text import query_terms
from memtrace_server.core.timefmt import parse_timestamp
from memtrace_server.storage.registry import store_from_url

ORG = "org_locomo"
BATCH = 1000


def memories(samples: list[dict[str, Any]], copies: int, seed: int) -> Iterator[MemoryRecord]:
    """Each conversation's turns under its agent, then ``copies`` copies of every other
    conversation's turns under it too, at random times within its own first and last turn
    (a distractor session keeps its turns in order, so each turn's context is a turn of
    the same distractor session)."""
    rng = random.Random(seed)
    own = {s["sample_id"]: turns(s) for s in samples}
    for agent, body in own.items():
        times = [parse_timestamp(t["time"]) or 0 for t in body]
        first, last = min(times), max(times)
        for t, at in zip(body, times, strict=True):
            yield record(agent, t["session_id"], t["content"], at, t["metadata"]["dia_id"])
        for copy in range(copies):
            for other, theirs in own.items():
                if other == agent:
                    continue
                sessions: dict[str, int] = {}
                for i, t in enumerate(theirs):
                    start = sessions.setdefault(t["session_id"], rng.randrange(first, last))
                    session = f"{agent}-x{copy}-{t['session_id']}"
                    at = start + i * 10**9
                    yield record(agent, session, t["content"], at, f"x{copy}:{other}")


def record(agent: str, session: str, content: str, at: int, dia_id: str) -> MemoryRecord:
    """A dialogue turn as the store keeps it (``bench/locomo.py`` sends the same over HTTP)."""
    return MemoryRecord(
        id=new_memory_id(at),
        org_id=ORG,
        agent_id=agent,
        content=content,
        time_ns=at,
        session_id=session,
        event_type="dialogue_turn",
        metadata={"dia_id": dia_id},
    )


BOUNDS = (
    (sqlite_store, ("BM25_MATCHES", "SCOPE_WALK", "TERM_WALK")),
    (postgres_store, ("RANKED_POOL",)),
)


@contextmanager
def exact() -> Iterator[None]:
    """Every match ranked: the bounds that send a query to a pool, lifted."""
    saved = [(module, name, getattr(module, name)) for module, names in BOUNDS for name in names]
    for module, name, _ in saved:
        setattr(module, name, 10**12)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


@contextmanager
def counting_pools(counter: list[int]) -> Iterator[None]:
    """Count the queries ranked over a pool (the pool's scorer is called once for each)."""
    scorer = sqlite_store.bm25

    def counted(*args: Any) -> Any:
        counter[0] += 1
        return scorer(*args)

    sqlite_store.bm25 = counted
    try:
        yield
    finally:
        sqlite_store.bm25 = scorer


async def run(data: Path, copies: int, seed: int, url: str | None) -> dict[str, Any]:
    """Load the store (``url``, else SQLite in a temporary directory), search each question
    both ways, figures."""
    samples = json.loads(data.read_text())
    work = Path(tempfile.mkdtemp(prefix="memtrace-pool-quality-"))
    store = store_from_url(url or f"sqlite:///{(work / 'memtrace.db').as_posix()}")
    await store.open()
    try:
        await store.create_org(OrgRecord(ORG, ORG, time.time_ns()))
        started, loaded, batch = time.perf_counter(), 0, []
        for m in memories(samples, copies, seed):
            batch.append(m)
            if len(batch) == BATCH:
                loaded += sum(await store.insert_memories(ORG, batch, None, time.time_ns()))
                batch = []
        loaded += sum(await store.insert_memories(ORG, batch, None, time.time_ns()))
        load_s = time.perf_counter() - started
        if url and url.startswith("postgresql"):
            import psycopg  # statistics for the planner after a bulk load, as the bench does

            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
        questions = [
            (s["sample_id"], qa)
            for s in samples
            for qa in s["qa"]
            if qa.get("category") in (1, 2, 3, 4) and qa.get("evidence")
        ]
        recalls: dict[str, dict[int, list[float]]] = {
            name: {k: [] for k in KS} for name in ("served", "exact")
        }
        latency: dict[str, list[float]] = {"served": [], "exact": []}
        overlaps: list[float] = []
        pooled = [0]
        for agent, qa in questions:
            flt = MemoryFilter(
                agent_id=agent, query=tuple(query_terms(qa["question"])), limit=max(KS)
            )
            ranked = {}
            for name in ("served", "exact"):
                with exact() if name == "exact" else counting_pools(pooled):
                    t0 = time.perf_counter()
                    found = await store.query_memories(ORG, flt)
                    latency[name].append((time.perf_counter() - t0) * 1000)
                ranked[name] = [(m.metadata or {}).get("dia_id") for m in found]
                for k in KS:
                    hits = set(qa["evidence"]) & set(ranked[name][:k])
                    recalls[name][k].append(len(hits) / len(qa["evidence"]))
            best = set(ranked["exact"][:10])
            overlaps.append(len(best & set(ranked["served"][:10])) / max(len(best), 1))
    finally:
        await store.close()
    return {
        "memories": loaded,
        "load_s": round(load_s, 1),
        "questions": len(questions),
        "pooled": pooled[0],
        "overlap@10": round(100 * statistics.fmean(overlaps), 1),
        **{
            name: {
                **{f"R@{k}": round(100 * statistics.fmean(v), 1) for k, v in r.items()},
                "p50_ms": round(statistics.median(latency[name]), 2),
            }
            for name, r in recalls.items()
        },
    }


def main() -> None:
    """Load, query both ways, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--copies", type=int, default=8, help="distractor copies per agent")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres", action="store_true", help="on PostgreSQL, not SQLite")
    args = parser.parse_args()
    cluster = start_postgres() if args.postgres else None
    try:
        url = cluster.new_database() if cluster is not None else None
        out = asyncio.run(run(args.data, args.copies, args.seed, url))
    finally:
        if cluster is not None:
            cluster.stop()
    print(
        f"{out['memories']} memories ({args.copies} copies of the other conversations per"
        f" agent), loaded in {out['load_s']} s; {out['questions']} questions"
        + (f", {out['pooled']} of them ranked over a pool" if not args.postgres else "")
    )
    print("| ranking | R@5 | R@10 | R@20 | p50 ms (store, in-process) |")
    print("|---|---:|---:|---:|---:|")
    for name in ("served", "exact"):
        f = out[name]
        print(f"| {name} | {f['R@5']} | {f['R@10']} | {f['R@20']} | {f['p50_ms']} |")
    print(f"\nThe served top 10 holds {out['overlap@10']} % of the exact top 10 (mean).")


if __name__ == "__main__":
    main()
