"""Export and import of an organisation's data as JSON Lines, streamed in pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from memtrace_server.core.export import export_line, parse_line
from memtrace_server.core.records import AgentRecord, MemoryRecord, SessionRecord
from memtrace_server.core.timefmt import now_ns
from memtrace_server.storage.routing import Stores

PAGE = 1000


@dataclass
class ImportReport:
    """What an import added and what it found already there."""

    agents: int = 0
    sessions: int = 0
    memories: int = 0
    skipped: int = 0
    lines: int = 0
    errors: list[str] = field(default_factory=list)


class Transfer:
    """Streams an org's agents, sessions and memories out, and back in idempotently."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    async def export(self, org_id: str, agent_id: str | None = None) -> AsyncIterator[bytes]:
        """JSON lines: agents, then sessions, then memories oldest first (expired ones left out).

        Memories are read a page at a time, so memory use does not grow with the org.
        """
        store = await self.stores.tenant(org_id)
        agents = await store.list_agents(org_id)
        if agent_id:
            agents = [a for a in agents if agent_id in (a.id, a.name)]
        for agent in reversed(agents):
            yield export_line(agent)
        sessions = await store.list_sessions(org_id, agents[0].id if agent_id and agents else None)
        if agent_id and not agents:
            sessions = []
        for session in reversed(sessions):
            yield export_line(session)
        after: tuple[int, int] | None = None
        while True:
            page = await store.export_memories(org_id, agent_id, after, PAGE)
            if not page:
                return
            now = now_ns()
            for cursor, memory in page:
                after = cursor
                if memory.expires_at_ns is None or memory.expires_at_ns > now:
                    yield export_line(memory)

    async def import_lines(self, org_id: str, lines: Iterable[bytes | str]) -> ImportReport:
        """Import export lines into ``org_id``; records whose ids exist are skipped."""
        report = ImportReport()
        store = await self.stores.tenant(org_id)
        batch: list[MemoryRecord] = []

        async def flush() -> None:
            if batch:
                added = await store.import_memories(org_id, batch, now_ns())
                report.memories += added
                report.skipped += len(batch) - added
                batch.clear()

        for line in lines:
            report.lines += 1
            record = parse_line(line, org_id)
            if isinstance(record, MemoryRecord):
                batch.append(record)
                if len(batch) >= PAGE:
                    await flush()
            elif isinstance(record, AgentRecord):
                if await store.import_agent(org_id, record):
                    report.agents += 1
                else:
                    report.skipped += 1
            elif isinstance(record, SessionRecord):
                if await store.get_agent(org_id, record.agent_id) is None:
                    report.errors.append(
                        f"line {report.lines}: session {record.id} names unknown agent"
                    )
                elif await store.import_session(org_id, record):
                    report.sessions += 1
                else:
                    report.skipped += 1
        await flush()
        return report
