"""SQLite's memory inserts in a process of their own (``storage.ingest_process``): answered
after the child's COMMIT, its errors the same errors, nothing it was sent lost when the
store closes, and the server's writer taking over if the child ends. The store contract
(``test_store_contract.py``) runs on such a store too, and every test of a ``memtrace
serve`` subprocess goes through one."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memtrace_server.core import errors
from memtrace_server.core.records import MemoryFilter, MemoryRecord, OrgRecord
from memtrace_server.storage import base
from memtrace_server.storage.base import DuplicateName, StoreError
from memtrace_server.storage.ingest_process import _Forward, _messages, _Outbox, _portable
from memtrace_server.storage.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio
NOW = time.time_ns()
WINDOW = 24 * 3600 * 10**9
PATIENCE = 2.0  # seconds an insert is given to finish where the test needs it not to


def mem(n: int, org: str = "org_a", **kw: object) -> MemoryRecord:
    fields: dict[str, object] = {
        "agent_id": "agent_1",
        "content": f"<b>m{n}</b>",
        "time_ns": NOW + n,
    }
    fields.update(kw)
    return MemoryRecord(id=f"mem_{NOW + n:016x}{n:010x}", org_id=org, **fields)  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "ingest.db", synchronous="NORMAL", ingest_process=True)
    await opened.open()
    for org in ("org_a", "org_b"):
        await opened.create_org(OrgRecord(org, org, NOW))
    try:
        yield opened
    finally:
        await opened.close()


def child_pid(store: SQLiteStore) -> int:
    assert store._ingest is not None and store._ingest.alive and store._ingest.proc is not None
    return store._ingest.proc.pid


async def test_an_insert_while_another_is_in_flight_is_answered_by_the_child(
    store: SQLiteStore,
) -> None:
    """An insert alone goes to the server's writer thread (a hop less: the lowest latency);
    one made while another is in flight goes to the child, answered after its COMMIT."""
    pid = child_pid(store)
    assert pid != os.getpid()
    os.kill(pid, signal.SIGSTOP)  # the child holds what it is sent: no one else may answer it
    try:
        alone = asyncio.ensure_future(store.insert_memories("org_a", [mem(1)], WINDOW, NOW))
        second = asyncio.ensure_future(store.insert_memories("org_a", [mem(2)], WINDOW, NOW))
        assert await alone == [True]
        done, _ = await asyncio.wait({second}, timeout=PATIENCE)
        assert not done
        assert [m.content for m in await store.query_memories("org_a", MemoryFilter())] == [
            "<b>m1</b>"
        ]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert await second == [True]
    assert len(await store.query_memories("org_a", MemoryFilter())) == 2


async def test_dedup_and_tenants_hold_through_the_child(store: SQLiteStore) -> None:
    first = await asyncio.gather(
        *(
            store.insert_memories("org_a", [mem(i, dedup_key="same")], WINDOW, NOW)
            for i in range(16)
        )
    )
    assert sorted(r[0] for r in first) == [False] * 15 + [True]
    assert await store.insert_memories(
        "org_b", [mem(20, org="org_b", dedup_key="same")], WINDOW, NOW
    ) == [True]
    assert len(await store.query_memories("org_a", MemoryFilter())) == 1
    [theirs] = await store.query_memories("org_b", MemoryFilter())
    assert theirs.org_id == "org_b" and await store.get_memory("org_a", theirs.id) is None


async def test_an_insert_fails_with_the_error_it_fails_with_in_process(store: SQLiteStore) -> None:
    await store.insert_memories("org_a", [mem(1)], None, NOW)
    pid = child_pid(store)
    os.kill(pid, signal.SIGSTOP)  # the child holds the second insert until the first is done
    try:
        alone = asyncio.ensure_future(store.insert_memories("org_a", [mem(2)], None, NOW))
        again = asyncio.ensure_future(store.insert_memories("org_a", [mem(1)], None, NOW))
        assert await alone == [True]  # the writer thread's
        assert not again.done()  # so the child's
    finally:
        os.kill(pid, signal.SIGCONT)
    with pytest.raises(DuplicateName) as raised:  # the same id again: a 409, as in process
        await again
    assert raised.value.status == 409 and "memories.id" in raised.value.message
    assert store._ingest is not None and store._ingest.alive


def every_api_error() -> list[type[errors.ApiError]]:
    found, todo = [], [errors.ApiError]
    while todo:
        found.append(todo.pop())
        todo += found[-1].__subclasses__()
    return found


def made(kind: type[errors.ApiError]) -> errors.ApiError:
    """One of ``kind``, whatever its constructor takes (some reword the message, one takes
    a retry delay)."""
    for args, kwargs in ((("what went wrong",), {"hint": "a hint"}), (("what went wrong", 7), {})):
        try:
            return kind(*args, **kwargs)
        except TypeError:
            continue
    try:
        return kind("what went wrong")
    except TypeError as exc:
        raise AssertionError(f"cannot make a {kind.__name__}") from exc


def test_every_error_of_the_server_crosses_the_process_whole() -> None:
    assert base.StoreFull in every_api_error()
    for kind in every_api_error():
        exc = made(kind)
        crossed = pickle.loads(pickle.dumps(_portable(exc)))
        assert type(crossed) is kind
        assert (crossed.status, crossed.body(), str(crossed)) == (exc.status, exc.body(), str(exc))
        assert crossed.message == exc.message and crossed.extra == exc.extra


def test_an_error_that_cannot_cross_becomes_a_store_error() -> None:
    class Local(Exception):  # not importable by name: pickle refuses it
        pass

    crossed = _portable(Local("boom"))
    assert isinstance(crossed, StoreError) and "Local: boom" in crossed.message


async def test_closing_answers_and_keeps_every_insert_sent(tmp_path: Path) -> None:
    path = tmp_path / "ingest.db"
    store = SQLiteStore(path, synchronous="NORMAL", ingest_process=True)
    await store.open()
    sent = [
        asyncio.ensure_future(store.insert_memories("org_a", [mem(i)], None, NOW))
        for i in range(64)
    ]
    await asyncio.sleep(0)  # each call is handed to the child
    await store.close()
    assert [await s for s in sent] == [[True]] * 64
    reopened = SQLiteStore(path, synchronous="NORMAL")
    await reopened.open()
    try:
        assert len(await reopened.query_memories("org_a", MemoryFilter(limit=100))) == 64
    finally:
        await reopened.close()


async def test_when_the_child_ends_its_unanswered_inserts_fail_and_the_writer_takes_over(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    pid = child_pid(store)
    os.kill(pid, signal.SIGSTOP)
    alone = asyncio.ensure_future(store.insert_memories("org_a", [mem(1)], None, NOW))
    sent = asyncio.ensure_future(store.insert_memories("org_a", [mem(2)], None, NOW))
    assert await alone == [True]  # the writer thread's
    with caplog.at_level(logging.ERROR, logger="memtrace.storage.ingest_process"):
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(StoreError) as raised:
            await sent
    assert raised.value.status == 503
    assert any("ingest process ended" in r.getMessage() for r in caplog.records)
    assert store._ingest is not None and not store._ingest.alive
    together = [store.insert_memories("org_a", [mem(n)], None, NOW) for n in (3, 4)]
    assert await asyncio.gather(*together) == [[True], [True]]
    assert {m.content for m in await store.query_memories("org_a", MemoryFilter())} == {
        "<b>m1</b>",
        "<b>m3</b>",
        "<b>m4</b>",
    }


async def test_the_childs_log_lines_are_the_servers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="memtrace.storage.ingest_process"):
        store = SQLiteStore(tmp_path / "ingest.db", ingest_process=True)
        await store.open()
        pid = child_pid(store)
        await store.close()
    assert any(
        r.name == "memtrace.storage.ingest_process" and f"ingest process {pid} " in r.getMessage()
        for r in caplog.records
    )


async def test_a_record_logged_on_another_thread_of_the_child_is_sent_too() -> None:
    """The child's writer thread logs a failed transaction: its record must reach the
    server like the loop's own."""
    ours, theirs = socket.socketpair()
    _, writer = await asyncio.open_connection(sock=ours)
    peer, _ = await asyncio.open_connection(sock=theirs)
    forward = _Forward(_Outbox(writer))
    record = logging.LogRecord(
        "memtrace.storage", logging.ERROR, __file__, 1, "failed: %s", ("x",), None
    )
    await asyncio.to_thread(forward.emit, record)
    message = await asyncio.wait_for(anext(_messages(peer)), PATIENCE)
    assert message == ("log", "memtrace.storage", logging.ERROR, "failed: x")
    writer.close()
