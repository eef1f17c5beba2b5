"""SQLite writers of several processes on one file take turns through a kernel lock; a
writer and the loop it answers take turns too."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from memtrace_server.core.records import OrgRecord
from memtrace_server.storage import sqlite as sqlite_store
from memtrace_server.storage.base import DuplicateName
from memtrace_server.storage.sql import Op, Stmt
from memtrace_server.storage.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio


async def test_a_write_waits_for_the_turn_another_writer_holds(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "memtrace.db")
    await store.open()
    # Another process's writer: an open file description of its own holding the lock.
    other = os.open(tmp_path / "memtrace.db-writer", os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        write = asyncio.ensure_future(store.create_org(OrgRecord("org_a", "A", time.time())))
        done, _ = await asyncio.wait({write}, timeout=0.3)
        assert not done, "the write did not wait for the other writer's turn"
        fcntl.flock(other, fcntl.LOCK_UN)
        await asyncio.wait_for(write, timeout=10)
        assert await store.get_org("org_a") is not None
        # Between transactions the turn is free: the other writer gets it at once.
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_UN)
    finally:
        os.close(other)
        await store.close()


def _commits(wal: Path) -> int:
    """How many transactions a WAL file holds: its frames that end one carry the
    database's size in pages (the others carry 0)."""
    data = wal.read_bytes()
    page_size = int.from_bytes(data[8:12], "big")
    salt = data[16:24]
    count = 0
    for offset in range(32, len(data) - 24 + 1, 24 + page_size):
        header = data[offset : offset + 24]
        if header[8:16] != salt:  # left over from before the file was last restarted
            break
        count += int.from_bytes(header[4:8], "big") > 0
    return count


async def test_writes_that_arrive_while_the_writer_waits_for_its_turn_share_its_transaction(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "memtrace.db")
    await store.open()
    other = os.open(tmp_path / "memtrace.db-writer", os.O_RDWR)
    try:
        await store.create_org(OrgRecord("org_a", "A", time.time()))
        before = _commits(tmp_path / "memtrace.db-wal")
        fcntl.flock(other, fcntl.LOCK_EX)
        first = asyncio.ensure_future(store.create_org(OrgRecord("org_b", "B", time.time())))
        await asyncio.sleep(0)  # the write runs up to its wait for the writer
        while not store._queue.empty():  # until the writer has taken it, and waits its turn
            await asyncio.sleep(0.001)
        later = [
            asyncio.ensure_future(store.create_org(OrgRecord(f"org_{n}", n, time.time())))
            for n in ("c", "d")
        ]
        await asyncio.sleep(0)
        assert store._queue.qsize() == 2  # queued behind it
        fcntl.flock(other, fcntl.LOCK_UN)
        await asyncio.wait_for(asyncio.gather(first, *later), timeout=10)
        assert _commits(tmp_path / "memtrace.db-wal") == before + 1
        for org in ("org_b", "org_c", "org_d"):
            assert await store.get_org(org) is not None
    finally:
        os.close(other)
        await store.close()


async def test_the_writer_lets_its_callers_run_before_its_next_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a commit the writer waits for the loop to run the callers it answered, so its
    next transaction does not contend with their responses for the GIL."""
    monkeypatch.setattr(sqlite_store, "ANSWER_WAIT", 30.0)  # no deadline on a slow machine
    store = SQLiteStore(tmp_path / "memtrace.db")
    await store.open()
    inside, release = threading.Event(), threading.Event()

    def held_write() -> Op[None]:  # run by the writer, inside its transaction
        inside.set()
        release.wait(10)
        yield Stmt("INSERT INTO orgs (id, name, created_at) VALUES ('org_a', 'A', 0)")

    async def first_caller() -> int:
        await store._write(held_write())
        return store._queue.qsize()  # as it runs on: the writes still queued

    try:
        first = asyncio.ensure_future(first_caller())
        while not inside.is_set():
            await asyncio.sleep(0.001)
        second = asyncio.ensure_future(store.create_org(OrgRecord("org_b", "B", time.time())))
        await asyncio.sleep(0)
        assert store._queue.qsize() == 1  # queued for the writer's next transaction
        release.set()
        # The first caller ran on before the writer took the second write.
        assert await asyncio.wait_for(first, timeout=10) == 1
        await asyncio.wait_for(second, timeout=10)
        assert await store.get_org("org_a") is not None
        assert await store.get_org("org_b") is not None
    finally:
        release.set()
        await store.close()


async def test_a_failed_transaction_gives_the_turn_back(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "memtrace.db")
    await store.open()
    other = os.open(tmp_path / "memtrace.db-writer", os.O_RDWR)
    try:
        await store.create_org(OrgRecord("org_a", "A", time.time()))
        with pytest.raises(DuplicateName):
            await store.create_org(OrgRecord("org_a", "again", time.time()))
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_UN)
    finally:
        os.close(other)
        await store.close()


async def test_opening_the_file_waits_for_the_turn_of_a_process_migrating_it(
    tmp_path: Path,
) -> None:
    """Servers started together (``--workers``) each switch the file to WAL and migrate
    it. SQLite refuses that switch at once ("database is locked"), without waiting, while
    another connection writes the file in rollback mode, so opening takes its turn too."""
    path = tmp_path / "memtrace.db"
    # Another process opening the file first: it holds the turn and writes.
    other = sqlite3.connect(path, isolation_level=None)
    turn = os.open(tmp_path / "memtrace.db-writer", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(turn, fcntl.LOCK_EX)
        other.execute("BEGIN IMMEDIATE")
        other.execute("CREATE TABLE early (x)")
        store = SQLiteStore(path)
        opening = asyncio.ensure_future(store.open())
        done, _ = await asyncio.wait({opening}, timeout=0.3)
        assert not done, "opening did not wait for the other process's turn"
        other.execute("COMMIT")
        fcntl.flock(turn, fcntl.LOCK_UN)
        await asyncio.wait_for(opening, timeout=10)
        await store.create_org(OrgRecord("org_a", "A", time.time_ns()))
        assert await store.get_org("org_a") is not None
        await store.close()
    finally:
        other.close()
        os.close(turn)
