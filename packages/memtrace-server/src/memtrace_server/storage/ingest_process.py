"""SQLite's memory inserts in a process of their own.

A ``SQLiteStore`` writes from one thread, which shares the interpreter's lock with the
event loop: under a stream of single-memory POSTs the two took turns, each idle while the
other ran, with a core of the machine left unused. With ``ingest_process`` the server
hands each ``insert_memories`` call made while another is in flight to a child process
(one alone stays on the writer thread: a hop less), which runs a
``SQLiteStore`` of its own on the same file and answers each call after its group's
COMMIT, as the writer thread does; every other write stays on the server's writer thread.
Writers of one file take turns through its lock file, as ``--workers`` processes do, so
dedup, keyed versions and durability hold as they do across processes.

The two talk over a socket pair (no path on disk): frames of a 4-byte length and a pickle,
written once a loop turn. The child's log records go to the server, which logs them as its
own. If the child ends, the calls it had not answered fail (a store error: 503) and the
server's writer thread takes the inserts from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memtrace_server.core.records import MemoryBatch
from memtrace_server.storage.base import StoreError
from memtrace_server.turns import TurnBatch

if TYPE_CHECKING:
    from memtrace_server.storage.sqlite import SQLiteStore

log = logging.getLogger("memtrace.storage.ingest_process")

FRAME = struct.Struct("!I")
START_SECONDS = 60.0  # for the child to open its store (the server has migrated it already)
STOP_SECONDS = 30.0  # for the child to finish its inserts and close (a merge takes 10 s at most)


def _frames(messages: list[Any]) -> bytes:
    out = []
    for message in messages:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        out += [FRAME.pack(len(data)), data]
    return b"".join(out)


async def _messages(reader: asyncio.StreamReader) -> AsyncIterator[Any]:
    """The peer's messages, until it closes its end."""
    while True:
        try:
            head = await reader.readexactly(FRAME.size)
            data = await reader.readexactly(FRAME.unpack(head)[0])
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        yield pickle.loads(data)


class _Outbox:
    """Messages sent together once the loop turn that queued them ends: one write for all
    the inserts (or answers) of a turn."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._turn: TurnBatch[Any] = TurnBatch(self._send)

    def put(self, message: Any) -> None:
        self._turn.put(message)

    def flush(self) -> None:
        self._turn.flush()

    def _send(self, messages: list[Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(_frames(messages))


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it survives a pickle round trip, else a store error."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return StoreError(f"{type(exc).__name__}: {exc}")
    return exc


class IngestProcess:
    """The server's side: starts the child, sends it inserts, resolves their answers."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.path = path
        self.synchronous = synchronous
        self.proc: subprocess.Popen[bytes] | None = None
        self._outbox: _Outbox | None = None
        self._answers: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[list[bool]]] = {}
        self._ids = itertools.count()
        self._closing = False

    @property
    def alive(self) -> bool:
        """Whether inserts go to the child."""
        return self._answers is not None and not self._answers.done()

    async def start(self) -> None:
        """Start the child and wait until its store is open. Raises StoreError if it fails."""
        self._closing = False
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    __name__,
                    str(theirs.fileno()),
                    str(self.path),
                    self.synchronous,
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # its log records come over the socket
                start_new_session=True,  # a terminal's Ctrl-C reaches the server only
            )
        except OSError as exc:
            ours.close()
            raise StoreError(f"cannot start the ingest process: {exc}") from exc
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        messages = _messages(reader)
        try:
            first = await asyncio.wait_for(anext(messages, ("ended",)), START_SECONDS)
        except asyncio.TimeoutError:
            first = ("ended",)
        if first[0] != "ready":
            writer.close()
            await self._reap()
            raise StoreError(f"the ingest process did not start: {first[1:] or 'it ended'}")
        self._outbox = _Outbox(writer)
        self._answers = asyncio.get_running_loop().create_task(self._answer(messages))

    async def insert(self, batch: MemoryBatch) -> list[bool]:
        """The child's answer to one ``insert_memories`` call: which memories were stored."""
        assert self._outbox is not None
        n = next(self._ids)
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._pending[n] = future
        self._outbox.put((n, batch))
        return await future

    async def _answer(self, messages: AsyncIterator[Any]) -> None:
        async for message in messages:
            if message[0] == "log":
                _, name, level, text = message
                logging.getLogger(name).log(level, "%s", text)
                continue
            n, ok, value = message
            future = self._pending.pop(n, None)
            if future is None or future.done():  # its caller gave up
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        if not self._closing:
            log.error("the ingest process ended; the server's writer takes the inserts")
        failure = StoreError("the store's ingest process ended before answering")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(failure)
        self._pending.clear()

    async def close(self) -> None:
        """Let the child finish what it was sent, then wait for it to exit."""
        self._closing = True
        if self._outbox is not None:
            self._outbox.flush()
            with contextlib.suppress(OSError):
                self._outbox.writer.write_eof()  # the child reads to the end, answers, exits
        if self._answers is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._answers), STOP_SECONDS)
        if self._outbox is not None:
            self._outbox.writer.close()
        await self._reap()

    async def _reap(self) -> None:
        if self.proc is None:
            return
        try:
            await asyncio.to_thread(self.proc.wait, STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait)
        if self._answers is not None and not self._answers.done():
            self._answers.cancel()


class _Forward(logging.Handler):
    """The child's log records, sent to the server to log, from whichever thread logs them
    (the writer thread logs a failed transaction)."""

    def __init__(self, outbox: _Outbox) -> None:
        super().__init__(logging.INFO)
        self.outbox = outbox
        self.loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process is ending
            self.loop.call_soon_threadsafe(
                self.outbox.put, ("log", record.name, record.levelno, text)
            )


def _answered(outbox: _Outbox, n: int, future: asyncio.Future[list[bool]]) -> None:
    if future.cancelled():
        outbox.put((n, False, StoreError("the insert was cancelled")))
    elif (exc := future.exception()) is not None:
        outbox.put((n, False, _portable(exc)))
    else:
        outbox.put((n, True, future.result()))


async def _serve(fd: int, path: str, synchronous: str) -> None:
    from memtrace_server.storage.sqlite import SQLiteStore

    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=fd))
    outbox = _Outbox(writer)
    root = logging.getLogger()
    root.handlers[:] = [_Forward(outbox)]
    root.setLevel(logging.INFO)
    store: SQLiteStore = SQLiteStore(path, synchronous=synchronous, readers=1)
    try:
        await store.open()
    except Exception as exc:
        writer.write(_frames([("failed", str(exc))]))
        await writer.drain()
        return
    outbox.put(("ready",))
    log.info("ingest process %d inserts the memories of %s", os.getpid(), path)
    waiting: set[asyncio.Future[list[bool]]] = set()
    try:
        async for n, batch in _messages(reader):
            future = store.queued(batch)
            future.add_done_callback(functools.partial(_answered, outbox, n))
            future.add_done_callback(waiting.discard)
            waiting.add(future)
    finally:
        await store.close()  # the writer runs every queued insert first
        if waiting:
            await asyncio.wait(waiting)  # their answers are queued in the outbox by now
        outbox.flush()
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


def main() -> None:
    """The child: ``python -m memtrace_server.storage.ingest_process FD PATH SYNCHRONOUS``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # it ends when the server closes the socket
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd, path, synchronous = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    os.set_inheritable(fd, False)
    asyncio.run(_serve(fd, path, synchronous))


if __name__ == "__main__":
    main()
