"""What the web console's overview and agent pages summarise: totals and daily counts."""

from __future__ import annotations

from dataclasses import dataclass

from memtrace_server.core.records import AgentRecord, MemoryFilter
from memtrace_server.core.rules import DAY_NS
from memtrace_server.core.timefmt import now_ns
from memtrace_server.storage.routing import Stores


@dataclass(frozen=True, slots=True)
class Totals:
    """How much an org holds, and how many memories it wrote recently."""

    memories: int
    agents: int
    sessions: int
    memories_24h: int
    memories_7d: int


@dataclass(frozen=True, slots=True)
class ActiveAgent:
    """An agent and how many memories it wrote recently."""

    agent: AgentRecord
    memories_24h: int
    memories_7d: int


@dataclass(frozen=True, slots=True)
class DayCount:
    """Memories written on one UTC day (``start_ns`` is its midnight)."""

    start_ns: int
    count: int


class Overview:
    """Counts for the console, through the org's tenant store."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    async def totals(self, org_id: str) -> Totals:
        """Stored agents, sessions and memories, and memories of the last 24 h and 7 days."""
        store = await self.stores.tenant(org_id)
        now = now_ns()
        usage = await store.usage(org_id)
        day = await store.count_memories(org_id, MemoryFilter(since_ns=now - DAY_NS))
        week = await store.count_memories(org_id, MemoryFilter(since_ns=now - 7 * DAY_NS))
        return Totals(usage["memories"], usage["agents"], usage["sessions"], day, week)

    async def per_day(
        self, org_id: str, agent_id: str | None = None, days: int = 30
    ) -> list[DayCount]:
        """Memories written per UTC day over the last ``days`` days, oldest first."""
        store = await self.stores.tenant(org_id)
        first = now_ns() // DAY_NS * DAY_NS - (days - 1) * DAY_NS
        counts = await store.count_by_day(org_id, MemoryFilter(agent_id=agent_id), first, days)
        return [DayCount(first + n * DAY_NS, count) for n, count in enumerate(counts)]

    async def most_active(self, org_id: str, limit: int = 5) -> list[ActiveAgent]:
        """The agents active most recently, with the memories written under their names
        in the last 24 h and 7 days (index range counts, not the agents' full stats)."""
        store = await self.stores.tenant(org_id)
        agents = await store.list_agents(org_id)
        agents.sort(key=lambda a: a.last_active_at_ns or 0, reverse=True)
        now = now_ns()
        found = []
        for agent in [a for a in agents if a.last_active_at_ns][:limit]:
            day, week = [
                await store.count_memories(
                    org_id, MemoryFilter(agent_id=agent.name, since_ns=now - days * DAY_NS)
                )
                for days in (1, 7)
            ]
            found.append(ActiveAgent(agent, day, week))
        return found
