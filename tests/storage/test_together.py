"""Statements run ``together``: one step of an op, in order, each seeing what the ones
before it did; and a coalesced insert reads what it needs before writing in one such step
(on PostgreSQL, one round trip instead of one per statement)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from memtrace_server.core.records import MemoryBatch, MemoryRecord, OrgRecord
from memtrace_server.storage import sql
from memtrace_server.storage.base import DuplicateName
from memtrace_server.storage.postgres import PostgresStore
from memtrace_server.storage.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio
NOW = time.time_ns()
HOUR = 3600 * 10**9


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[sql.SqlStore]:
    if request.param == "postgres":
        opened: sql.SqlStore = PostgresStore(str(request.getfixturevalue("pg_url")))
    else:
        opened = SQLiteStore(tmp_path / "together.db")
    await opened.open()
    yield opened
    await opened.close()


def memory(n: int, session: str = "sess_1", when: int = NOW) -> MemoryRecord:
    return MemoryRecord(
        id=f"mem_{when + n:016x}{n:010x}",
        org_id="org_a",
        agent_id="agent_1",
        session_id=session,
        content=f"note {n}",
        dedup_key=f"key {n}",
        time_ns=when + n,
    )


async def test_statements_together_run_in_order_and_answer_each(store: sql.SqlStore) -> None:
    insert = "INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)"
    count = "SELECT count(*) FROM orgs WHERE id LIKE 'org_t%'"

    def op() -> sql.Op[list[Any]]:
        result = yield sql.together(
            [
                sql.Stmt(count),
                sql.Stmt(insert, ("org_t1", "T1", NOW)),
                sql.Stmt(insert, [("org_t2", "T2", NOW), ("org_t3", "T3", NOW)], many=True),
                sql.Stmt(count),
                sql.Stmt("SELECT id FROM orgs WHERE id LIKE 'org_t%' ORDER BY id"),
            ]
        )
        return [part.rows for part in result.parts]

    assert await store._write(op()) == [
        [(0,)],
        [],
        [],
        [(3,)],
        [("org_t1",), ("org_t2",), ("org_t3",)],
    ]


@pytest.mark.parametrize("together", [True, False])
async def test_a_failure_the_op_handles_undoes_its_writes(
    store: sql.SqlStore, together: bool
) -> None:
    """An op that catches a constraint failure, even one that returns at once, has its
    writes undone, the failure raised where it yielded (statements together or alone)."""
    await store.create_org(OrgRecord("org_t1", "T1", NOW))
    insert = "INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)"
    first, clash = sql.Stmt(insert, ("org_t2", "T2", NOW)), sql.Stmt(insert, ("org_t1", "x", NOW))

    def op() -> sql.Op[str]:
        try:
            if together:
                yield sql.together([first, clash])
            else:
                yield first
                yield clash
        except DuplicateName:
            return "refused"
        return "written"

    assert await store._write(op()) == "refused"
    assert [o.id for o in await store.list_orgs() if o.id.startswith("org_t")] == ["org_t1"]


def reads_before_writing(store: sql.SqlStore, batches: list[MemoryBatch]) -> list[sql.Stmt]:
    """The statements a coalesced insert waits for answers to (each a round trip on
    PostgreSQL) before its first write, the op driven without a database: nothing stored."""
    steps = sql.Steps(store._insert_batches(batches))
    waited = []
    while (stmt := steps.next()) is not None and not stmt.many:
        waited.append(stmt)
        empty = sql.Result([], 0)
        # (SQLite's writer then reads its next rowid: ``[(0,)]``)
        steps.result = sql.Result([(0,)], 0, tuple(empty for _ in stmt.together))
    return waited


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_coalesced_insert_reads_in_one_step(backend: str, tmp_path: Path) -> None:
    """Locks, dedup lookups and the sessions' stored neighbours: one step for all the calls
    coalesced (it was a round trip each on PostgreSQL)."""
    store: sql.SqlStore = (
        PostgresStore("postgresql://unused")
        if backend == "postgres"
        else SQLiteStore(tmp_path / "x")
    )
    batches = [
        MemoryBatch("org_a", (memory(0), memory(1, "sess_2")), HOUR, NOW),
        MemoryBatch("org_b", (memory(2),), HOUR, NOW),
        MemoryBatch("org_a", (memory(3),), None, NOW),
    ]
    waited = reads_before_writing(store, batches)
    assert waited[0].together
    if backend == "postgres":
        assert len(waited) == 1  # SQLite's writer reads its next rowid too, in-process
    texts = [part.sql for part in waited[0].together]
    dedup = [t for t in texts if "dedup_key" in t]
    neighbours = [t for t in texts if "session_id = v.column1" in t]
    locks = [t for t in texts if "advisory" in t]
    assert (len(dedup), len(neighbours), len(locks)) == (2, 2, int(backend == "postgres"))
    assert (
        texts[: len(locks)] == locks
    )  # the locks first: the lookups then see their holders' writes
