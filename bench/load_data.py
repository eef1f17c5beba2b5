"""Fill a SQLite store with synthetic memories through the store's bulk import path.

    python bench/load_data.py --db bench.db --count 100000 [--orgs 10] [--targets t.json]
    python bench/load_data.py --store-url postgresql://... --count 100000

Running it again on the same file appends ``--count`` more memories (new ids) to the
same orgs, agents and sessions, so a 100k store can be grown to 1M between two phases.

Shape: ``--orgs`` orgs, 1,000 agents with skewed (log-normal) activity, 20,000 sessions
owned by those agents, 70 % of memories in a session, tags from a vocabulary of 200,
150-400 character contents, times spread over the last 60 days. ``--targets`` writes a
JSON file with an API key of the first org and samples of its ids, for the read benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import time
from collections import defaultdict
from pathlib import Path

from memtrace_server.core.dedup import dedup_key
from memtrace_server.core.ids import new_memory_id
from memtrace_server.core.records import AgentRecord, MemoryRecord, SessionRecord
from memtrace_server.service.admin import Admin
from memtrace_server.storage.base import Store
from memtrace_server.storage.registry import store_from_url
from memtrace_server.storage.routing import Stores

WORDS = [f"w{n}" for n in range(5000)]
TAGS = [f"tag{n}" for n in range(200)]
AGENTS = 1000
SESSIONS = 20_000
SPAN_NS = 60 * 86400 * 10**9
BATCH = 5000


def main() -> None:
    """Parse the arguments and load the store."""
    parser = argparse.ArgumentParser()
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", type=Path, help="a SQLite file")
    where.add_argument("--store-url", help="any store URL (sqlite:///... or postgresql://...)")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--targets", type=Path, help="write an API key and id samples here")
    args = parser.parse_args()
    started = time.perf_counter()
    url = args.store_url or f"sqlite:///{args.db.resolve().as_posix()}"
    total = asyncio.run(load(url, args.count, args.orgs, args.seed, args.targets))
    took = time.perf_counter() - started
    print(f"loaded {args.count} memories ({total} in the store) in {took:.1f} s")


async def load(url: str, count: int, n_orgs: int, seed: int, targets: Path | None) -> int:
    """Load ``count`` memories; returns how many the store holds afterwards."""
    store = store_from_url(url, synchronous="OFF")
    await store.open()
    try:
        return await _load(store, count, n_orgs, seed, targets)
    finally:
        await store.close()


async def _load(store: Store, count: int, n_orgs: int, seed: int, targets: Path | None) -> int:
    now = time.time_ns()
    rng = random.Random(seed)
    admin = Admin(Stores(store))
    orgs = [f"org_bench{i:02d}" for i in range(n_orgs)]
    known = {o.id for o in await store.list_orgs()}
    for org in orgs:
        if org not in known:
            await admin.create_org(org, org_id=org)
    agents = [(orgs[i % n_orgs], f"agent_{i:04d}") for i in range(AGENTS)]
    weights = [rng.lognormvariate(0, 1.5) for _ in agents]
    owners = rng.choices(range(AGENTS), weights, k=SESSIONS)
    sessions_of: dict[int, list[str]] = defaultdict(list)
    for n, owner in enumerate(owners):
        sessions_of[owner].append(f"sess_{n:05d}")
    first_run = not known
    if first_run:
        for i, (org, agent) in enumerate(agents):
            await store.import_agent(org, AgentRecord(agent, org, agent, now - SPAN_NS))
            for sid in sessions_of[i]:
                await store.import_session(org, SessionRecord(sid, org, agent, now, now))

    # A fresh random stream per call, so a second run appends different memories.
    rng = random.Random(seed * 1_000_003 + len(known) + now)
    pending: dict[str, list[MemoryRecord]] = defaultdict(list)
    cumulative = list(itertools.accumulate(weights))
    for n in range(count):
        i = rng.choices(range(AGENTS), cum_weights=cumulative)[0]
        org, agent = agents[i]
        session = rng.choice(sessions_of[i]) if sessions_of[i] and rng.random() < 0.7 else ""
        t = now - SPAN_NS + (SPAN_NS * n) // count + rng.randrange(10**9)
        content = " ".join(rng.choices(WORDS, k=rng.randint(25, 60)))[: rng.randint(150, 400)]
        event = rng.choice(("general", "observation", "error", "action"))
        pending[org].append(
            MemoryRecord(
                id=new_memory_id(t),
                org_id=org,
                agent_id=agent,
                content=content,
                time_ns=t,
                memory_type=rng.choice(("episodic", "decision", "entity", "session")),
                event_type=event,
                session_id=session,
                metadata={"n": n},
                tags=tuple(sorted(set(rng.choices(TAGS, k=3)))),
                dedup_key=dedup_key(agent, event, content),
                importance=round(rng.random(), 3),
            )
        )
        if len(pending[org]) >= BATCH:
            await store.import_memories(org, pending.pop(org))
    for org, batch in pending.items():
        await store.import_memories(org, batch)

    if targets is not None:
        await _write_targets(store, admin, orgs[0], agents, weights, sessions_of, rng, targets)
    usage = [await store.usage(org) for org in orgs]
    return sum(u.get("memories", 0) for u in usage)


async def _write_targets(
    store: Store,
    admin: Admin,
    org: str,
    agents: list[tuple[str, str]],
    weights: list[float],
    sessions_of: dict[int, list[str]],
    rng: random.Random,
    path: Path,
) -> None:
    key, _ = await admin.create_key(org, f"bench-{time.time_ns()}", "read,write")
    mine = [i for i, (o, _) in enumerate(agents) if o == org]
    # Requests follow activity: busy agents are asked about more often.
    hot = rng.choices(mine, [weights[i] for i in mine], k=500)
    sessions = [s for i in hot for s in sessions_of[i][:1]]
    page = await store.export_memories(org, None, None, 1_000_000_000)
    sample = rng.sample([m.id for _, m in page], min(2000, len(page)))
    path.write_text(
        json.dumps(
            {
                "key": key,
                "agents": [agents[i][1] for i in hot],
                "sessions": sessions,
                "memory_ids": sample,
                "tag_pairs": [sorted(rng.sample(TAGS, 2)) for _ in range(500)],
                "words": rng.sample(WORDS, 500),
            }
        )
    )


if __name__ == "__main__":
    main()
