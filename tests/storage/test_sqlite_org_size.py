"""SQLite ranks an agent's common-word queries over a pool whose shape depends on how much
of its org the agent is: the org's size. Agents write memories without ever being
registered (a memory names its agent; only sessions and the agents API register one), so
the size is the org's own tally, kept with its agents' in every write, not a sum over the
registered agents (which read 0 for such an org, and took every agent for all of it)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memtrace_server.core.records import AgentRecord, MemoryFilter, MemoryRecord, OrgRecord
from memtrace_server.storage.sql import Stmt, run
from memtrace_server.storage.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio
NOW = time.time_ns()
SEC = 10**9


def mem(n: int, agent: str, org: str = "org_a", **kw: object) -> MemoryRecord:
    t = NOW - (5000 - n) * SEC
    fields: dict[str, object] = {"agent_id": agent, "content": f"note {n}", "time_ns": t, **kw}
    return MemoryRecord(id=f"mem_{t:016x}{n:010x}", org_id=org, **fields)  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "size.db")
    await s.open()
    for org in ("org_a", "org_b"):
        await s.create_org(OrgRecord(org, org, NOW))
    yield s
    await s.close()


async def sizes(store: SQLiteStore) -> tuple[int, int, int]:
    """The org's size as ranking reads it, its current memories counted, the other org's."""
    counted = await store.count_memories("org_a", MemoryFilter())
    return (
        await store._read(store._scope_size("org_a", None)),
        counted,
        await store._read(store._scope_size("org_b", None)),
    )


async def test_the_orgs_size_counts_every_agent_registered_or_not(store: SQLiteStore) -> None:
    await store.insert_memories("org_a", [mem(n, f"agent_{n % 3}") for n in range(30)], None, NOW)
    await store.insert_memories(
        "org_b", [mem(100 + n, "agent_0", "org_b") for n in range(4)], None, NOW
    )
    assert await sizes(store) == (30, 30, 4)  # no agent registered
    await store.ensure_agent("org_a", "agent_1", AgentRecord("agent_1", "org_a", "agent_1", NOW))
    assert await sizes(store) == (30, 30, 4)  # registering one changes nothing
    # keyed versions: the older is superseded and no longer counts
    await store.insert_memories("org_a", [mem(200, "agent_0", key="plan")], None, NOW)
    await store.insert_memories("org_a", [mem(201, "agent_0", key="plan")], None, NOW)
    assert await sizes(store) == (31, 31, 4)
    assert await store.delete_memories("org_a", MemoryFilter(agent_id="agent_2")) == 10
    assert await sizes(store) == (21, 21, 4)
    await store.erase_agent("org_a", AgentRecord("agent_1", "org_a", "agent_1", NOW))
    assert await sizes(store) == (11, 11, 4)
    await store.erase_org("org_a")
    assert await sizes(store) == (0, 0, 4)


async def test_a_store_from_before_the_orgs_tally_has_it_after_opening(tmp_path: Path) -> None:
    """The migration that adds the org's tally sums its agents' existing ones."""
    path = tmp_path / "old.db"
    s = SQLiteStore(path)
    await s.open()
    await s.create_org(OrgRecord("org_a", "org_a", NOW))
    await s.insert_memories("org_a", [mem(n, f"agent_{n % 4}") for n in range(12)], None, NOW)
    await s._write(run(Stmt("DELETE FROM agent_tallies WHERE agent_id = ''")))
    assert await s._read(s._scope_size("org_a", None)) == 0  # as a store made before it
    await s.close()
    with sqlite3.connect(path) as conn:  # the migration runs again on opening
        conn.execute("DELETE FROM schema_migrations WHERE version = 16")
    s = SQLiteStore(path)
    await s.open()
    try:
        assert await s._read(s._scope_size("org_a", None)) == 12
    finally:
        await s.close()
