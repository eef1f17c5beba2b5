"""Fill a store with synthetic memories through the store's batch insert path.

    python bench/load_data.py --db bench.db --count 100000 [--orgs 10] [--targets t.json]
    python bench/load_data.py --store-url postgresql://... --until 1000000 --busy-share 0.4

Running it again on the same store appends more memories (new ids) to the same orgs and
agents, so a 100k store can be grown to 1M between two phases: ``--count`` adds that many,
``--until`` adds what the store lacks to hold that many in all.

The store grows in time, as an agent's history does: its memories are a history of
stretches of ``STRETCH`` memories, the newest stretch first, each as long and as dense as
the one after it. An append extends the history back in time, so it adds backfills: older
memories in sessions of their own. The newest stretch, and with it every read of a time
window (the last day, the last week) or of one of its sessions, is the same at every size;
what grows is the history behind it. (Adding memories to the same days instead would make
every such read return more at each size, and measure the answers' size, not the store's.)

Shape of a stretch: ``--orgs`` orgs, 1,000 agents with skewed (log-normal) activity,
20,000 sessions owned by those agents, 70 % of memories in a session, tags from a
vocabulary of 200, 150-400 character contents, 60 days.

``--busy-share`` gives that share of the memories to one agent of an org of its own,
``agent_busy`` of ``org_busy``: a support agent with 5,000 sessions a stretch, in time
order over 90 days (90 % of its memories are in one), whose memories mostly share a few
words (``COMMON_WORDS``) and tags (``COMMON_TAGS``) besides the random ones.

Memories go in through ``insert_memories`` without a dedup window, the transaction a
``POST /api/v1/memories`` batch ends in, 5,000 at a time and four batches at once.
(``import_memories`` checks and locks each id, two round trips per memory, which made a
PostgreSQL load about half as fast.)
``--targets`` writes a JSON file with, for each population (``spread``: the first org;
``busy``: the busy agent), an API key of its org and samples of its ids for the reads.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import memtrace_server.storage.sqlite as sqlite_store
from memtrace_server.core.dedup import dedup_key
from memtrace_server.core.ids import new_memory_id
from memtrace_server.core.records import AgentRecord, MemoryRecord, SessionRecord
from memtrace_server.service.admin import Admin
from memtrace_server.storage.base import Store
from memtrace_server.storage.registry import store_from_url
from memtrace_server.storage.routing import Stores

DAY_NS = 86400 * 10**9
WORDS = [f"w{n}" for n in range(5000)]
TAGS = [f"tag{n}" for n in range(200)]
AGENTS = 1000
SESSIONS = 20_000
SPAN_NS = 60 * DAY_NS  # a stretch of the spread agents' history
STRETCH = 100_000  # memories a stretch of the history holds
BATCH = 5000
IN_FLIGHT = 4
PLANS = ("free", "pro", "team", "enterprise")
USERS = 20_000
SAMPLES = 2000

BUSY_ORG = "org_busy"
BUSY_AGENT = "agent_busy"
BUSY_SESSIONS = 5000
BUSY_SPAN_NS = 90 * DAY_NS  # a stretch of the busy agent's history
# The share of the busy agent's memories each of these words and tags is in.
COMMON_WORDS = {"customer": 0.9, "order": 0.75, "account": 0.6}
COMMON_TAGS = {"support": 0.8, "billing": 0.4, "shipping": 0.3}


def main() -> None:
    """Parse the arguments and load the store."""
    parser = argparse.ArgumentParser()
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", type=Path, help="a SQLite file")
    where.add_argument("--store-url", help="any store URL (sqlite:///... or postgresql://...)")
    how_many = parser.add_mutually_exclusive_group()
    how_many.add_argument("--count", type=int, default=100_000, help="add this many memories")
    how_many.add_argument("--until", type=int, help="add memories until the store holds this many")
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--busy-share", type=float, default=0.0, help="share for agent_busy")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--targets", type=Path, help="write an API key and id samples here")
    args = parser.parse_args()
    if not 0 <= args.busy_share < 1:
        parser.error("--busy-share is a share: at least 0, below 1")
    started = time.perf_counter()
    url = args.store_url or f"sqlite:///{args.db.resolve().as_posix()}"
    plan = Plan(args.orgs, args.busy_share, args.seed)
    added, total = asyncio.run(load(url, plan, args.count, args.until, args.targets))
    took = time.perf_counter() - started
    print(f"loaded {added} memories ({total} in the store) in {took:.1f} s")


@dataclass(frozen=True)
class Plan:
    """What the store looks like: orgs, the busy agent's share, the random seed."""

    orgs: int
    busy_share: float
    seed: int


async def load(
    url: str, plan: Plan, count: int, until: int | None, targets: Path | None
) -> tuple[int, int]:
    """Add memories (``count``, or up to ``until`` in all); how many, and the store's total."""
    store = store_from_url(url, synchronous="OFF")
    if isinstance(store, sqlite_store.SQLiteStore):
        # The load ends with its full-text indexes merged, as a server's are once it has
        # been idle a while. (Closing finishes a merge for 10 s, short of one at a few
        # million memories, and the server resumes it after it opens: during the reads.)
        sqlite_store.MERGE_ON_CLOSE = 3600.0
    await store.open()
    try:
        admin = Admin(Stores(store))
        population = await Population.prepare(store, admin, plan)
        before = await population.total(store)
        added = count if until is None else max(0, until - before)
        await population.insert(store, before, added)
        if targets is not None:
            await population.write_targets(store, admin, targets, added, before + added)
        return added, before + added
    finally:
        await store.close()


class Population:
    """The store's orgs, agents and sessions, and the random memories they are given.
    Memory ``g`` of the store's history (0 the newest) is ``g / STRETCH`` stretches old."""

    def __init__(self, plan: Plan, now: int, fresh: bool):
        self.plan = plan
        self.now = now
        self.fresh = fresh
        rng = random.Random(plan.seed)
        self.orgs = [f"org_bench{i:02d}" for i in range(plan.orgs)]
        self.agents = [(self.orgs[i % plan.orgs], f"agent_{i:04d}") for i in range(AGENTS)]
        self.weights = [rng.lognormvariate(0, 1.5) for _ in self.agents]
        self.sessions_of: dict[int, list[str]] = defaultdict(list)
        for n, owner in enumerate(rng.choices(range(AGENTS), self.weights, k=SESSIONS)):
            self.sessions_of[owner].append(f"sess_{n:05d}")
        # A fresh random stream per call, so a second run appends different memories.
        self.rng = random.Random(plan.seed * 1_000_003 + now)

    @classmethod
    async def prepare(cls, store: Store, admin: Admin, plan: Plan) -> Population:
        """The population, its orgs, agents and sessions created where missing."""
        now = time.time_ns()
        known = {o.id for o in await store.list_orgs()}
        population = cls(plan, now, fresh=not known)
        for org in population.orgs + ([BUSY_ORG] if plan.busy_share else []):
            if org not in known:
                await admin.create_org(org, org_id=org)
        agents = population.agents if population.fresh else []
        if plan.busy_share and await store.get_agent(BUSY_ORG, BUSY_AGENT) is None:
            agents = [*agents, (BUSY_ORG, BUSY_AGENT)]
        created = now - BUSY_SPAN_NS
        await in_flight(store.import_agent(o, AgentRecord(a, o, a, created)) for o, a in agents)
        return population

    async def _register_sessions(self, store: Store, stretch: int) -> None:
        """The sessions of a stretch of the history, each created when it begins."""
        spread = self.now - SPAN_NS * (stretch + 1)
        sessions = [
            SessionRecord(stretched(sid, stretch), org, agent, spread, spread)
            for i, (org, agent) in enumerate(self.agents)
            for sid in self.sessions_of[i]
        ]
        if self.plan.busy_share:
            busy = self.now - BUSY_SPAN_NS * (stretch + 1)
            sessions += [
                SessionRecord(stretched(sid, stretch), BUSY_ORG, BUSY_AGENT, busy, busy)
                for sid in busy_sessions()
            ]
        await in_flight((store.import_session(s.org_id, s) for s in sessions), limit=64)

    async def total(self, store: Store) -> int:
        """How many memories the store's orgs hold."""
        orgs = [*self.orgs, BUSY_ORG]
        return sum([(await store.usage(org)).get("memories", 0) for org in orgs])

    async def insert(self, store: Store, before: int, count: int) -> None:
        """Insert ``count`` new memories behind the ``before`` the store holds, after the
        sessions of each stretch they begin."""
        for stretch in range(-(-before // STRETCH), -(-(before + count) // STRETCH)):
            await self._register_sessions(store, stretch)
        batches = self.batches(before, count)
        await in_flight(store.insert_memories(o, b, None, self.now) for o, b in batches)

    def batches(self, before: int, count: int) -> Iterator[tuple[str, list[MemoryRecord]]]:
        """``count`` new memories, ``BATCH`` of one org at a time."""
        pending: dict[str, list[MemoryRecord]] = defaultdict(list)
        for org, memory in self.memories(before, count):
            pending[org].append(memory)
            if len(pending[org]) >= BATCH:
                yield org, pending.pop(org)
        yield from pending.items()

    def memories(self, before: int, count: int) -> Iterator[tuple[str, MemoryRecord]]:
        """Memories ``before`` to ``before + count`` of the history, newest first, the busy
        agent's share of them its own."""
        rng = self.rng
        cumulative = list(itertools.accumulate(self.weights))
        for g in range(before, before + count):
            age = g / STRETCH  # in stretches
            if rng.random() < self.plan.busy_share:
                yield BUSY_ORG, self._busy_memory(age)
            else:
                i = rng.choices(range(AGENTS), cum_weights=cumulative)[0]
                yield self.agents[i][0], self._spread_memory(i, age)

    def _spread_memory(self, i: int, age: float) -> MemoryRecord:
        rng = self.rng
        org, agent = self.agents[i]
        sessions = self.sessions_of[i]
        in_session = bool(sessions) and rng.random() < 0.7
        session = stretched(rng.choice(sessions), int(age)) if in_session else ""
        t = self._time(SPAN_NS, age)
        return self._memory(org, agent, session, t, self._words({}), rng.choices(TAGS, k=3))

    def _busy_memory(self, age: float) -> MemoryRecord:
        rng = self.rng
        t = self._time(BUSY_SPAN_NS, age)
        # Sessions follow each other in time: a session holds the memories of its part of
        # the stretch (the newest part, the stretch's last session).
        stretch = int(age)
        n = min(BUSY_SESSIONS - 1, int((1 - (age - stretch)) * BUSY_SESSIONS))
        session = stretched(f"busy_sess_{n:04d}", stretch) if rng.random() < 0.9 else ""
        tags = [tag for tag, share in COMMON_TAGS.items() if rng.random() < share]
        tags += rng.choices(TAGS, k=2)
        return self._memory(BUSY_ORG, BUSY_AGENT, session, t, self._words(COMMON_WORDS), tags)

    def _time(self, span: int, age: float) -> int:
        return self.now - int(span * age) - self.rng.randrange(10**9)

    def _words(self, common: dict[str, float]) -> str:
        """150-400 characters of random words; each common word, by its share, near the
        start (where the cut to length cannot reach)."""
        rng = self.rng
        words = rng.choices(WORDS, k=rng.randint(25, 60))
        for word, share in common.items():
            if rng.random() < share:
                words.insert(rng.randrange(10), word)
        return " ".join(words)[: rng.randint(150, 400)]

    def _memory(
        self, org: str, agent: str, session: str, t: int, content: str, tags: list[str]
    ) -> MemoryRecord:
        rng = self.rng
        event = rng.choice(("general", "observation", "error", "action"))
        return MemoryRecord(
            id=new_memory_id(t),
            org_id=org,
            agent_id=agent,
            content=content,
            time_ns=t,
            memory_type=rng.choice(("episodic", "decision", "entity", "session")),
            event_type=event,
            session_id=session,
            metadata={
                "plan": rng.choice(PLANS),
                "user": f"user_{rng.randrange(USERS)}",
                "trial": rng.random() < 0.1,
            },
            tags=tuple(sorted(set(tags))),
            dedup_key=dedup_key(agent, event, content),
            importance=round(rng.random(), 3),
        )

    async def write_targets(
        self, store: Store, admin: Admin, path: Path, added: int, total: int
    ) -> None:
        """How many memories were added and, per population, an API key of its org and
        what its reads ask for: sessions of the newest stretch, ids from all of the
        ``total`` memories' history."""
        stretches = max(1.0, total / STRETCH)
        populations = {"spread": await self._spread_targets(store, admin, stretches)}
        if await store.get_agent(BUSY_ORG, BUSY_AGENT) is not None:
            populations["busy"] = await self._busy_targets(store, admin, stretches)
        path.write_text(json.dumps({"added": added, "populations": populations}))

    async def _spread_targets(self, store: Store, admin: Admin, stretches: float) -> dict[str, Any]:
        rng = self.rng
        org = self.orgs[0]
        mine = [i for i, (o, _) in enumerate(self.agents) if o == org]
        # Requests follow activity: busy agents are asked about more often.
        hot = rng.choices(mine, [self.weights[i] for i in mine], k=500)
        words = rng.sample(WORDS, 500)
        return {
            "key": await _key(admin, org),
            "agents": [self.agents[i][1] for i in hot],
            "sessions": [s for i in hot for s in self.sessions_of[i][:1]],
            "memory_ids": await self._sample_ids(store, org, None, int(SPAN_NS * stretches)),
            "tag_pairs": [sorted(rng.sample(TAGS, 2)) for _ in range(500)],
            "words": words,
            "queries": [" ".join(words[j : j + 3]) for j in range(490)],
            "users": [f"user_{rng.randrange(USERS)}" for _ in range(500)],
        }

    async def _busy_targets(self, store: Store, admin: Admin, stretches: float) -> dict[str, Any]:
        rng = self.rng
        words = rng.sample(WORDS, 500)
        common = list(COMMON_WORDS)
        return {
            "key": await _key(admin, BUSY_ORG),
            "agent_id": BUSY_AGENT,  # every search is for this agent
            "agents": [BUSY_AGENT],
            "sessions": rng.sample(busy_sessions(), 500),
            "memory_ids": await self._sample_ids(
                store, BUSY_ORG, BUSY_AGENT, int(BUSY_SPAN_NS * stretches)
            ),
            # A tag most of its memories carry, and a rarer one.
            "tag_pairs": [
                sorted([rng.choice(list(COMMON_TAGS)), rng.choice(TAGS)]) for _ in range(500)
            ],
            "words": words,
            "queries": [" ".join(words[j : j + 3]) for j in range(490)],
            # Words most of its memories hold, with a rarer one: the ranking sees them all.
            "common_queries": [
                " ".join([*rng.sample(common, rng.randint(1, 2)), rng.choice(WORDS)])
                for _ in range(500)
            ],
        }

    async def _sample_ids(self, store: Store, org: str, agent: str | None, span: int) -> list[str]:
        """Ids of ``org``'s memories (of ``agent``, or any) at random times over ``span``."""
        ids: set[str] = set()
        for _ in range(SAMPLES):
            after = (self.now - span + self.rng.randrange(span), 0)
            page = await store.export_memories(org, agent, after, 1)
            ids.update(m.id for _, m in page)
        return sorted(ids)


async def in_flight(calls: Iterable[Awaitable[Any]], limit: int = IN_FLIGHT) -> None:
    """Await the calls, ``limit`` at once: PostgreSQL runs them side by side, which hides
    its round trips; SQLite's one writer takes them in turn."""
    running: set[asyncio.Task[Any]] = set()
    for call in calls:
        if len(running) >= limit:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raise what it raised
        running.add(asyncio.ensure_future(call))
    await asyncio.gather(*running)


async def _key(admin: Admin, org: str) -> str:
    key, _ = await admin.create_key(org, f"bench-{time.time_ns()}", "read,write")
    return key


def busy_sessions() -> list[str]:
    """The busy agent's session ids in the newest stretch."""
    return [f"busy_sess_{n:04d}" for n in range(BUSY_SESSIONS)]


def stretched(session: str, stretch: int) -> str:
    """A session's id in a stretch of the history (the newest keeps its own)."""
    return f"{session}-{stretch}" if stretch else session


if __name__ == "__main__":
    main()
