"""SQLite store: WAL, one writer thread that group-commits, a pool of reader threads.

Every write is an op (``storage.sql``) run by the writer inside a shared transaction; all
ops queued while a commit is in progress run in the next one, so concurrent requests
share one commit (and one fsync), and their memory inserts run as one op. A caller's
future resolves only after COMMIT returns, so an acknowledged write is on disk. What is
SQLite's own: the writer, tags in a side table, and the FTS5 indexes (kept by hand, since
memories and their index rows share rids; the word index holds each org's words apart).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import functools
import hashlib
import heapq
import itertools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import orjson

from memtrace_server.core.errors import ApiError
from memtrace_server.core.ranking import (
    CONTEXT_WEIGHT,
    LABEL_WEIGHT,
    Candidate,
    bm25,
    counted,
    scores,
    stem,
    term_weights,
)
from memtrace_server.core.records import MemoryBatch, MemoryFilter, MemoryRecord
from memtrace_server.core.text import agent_scope, org_scope, org_words, term_prefix
from memtrace_server.storage.base import (
    DuplicateName,
    MissingReference,
    StoreError,
    StoreFull,
)
from memtrace_server.storage.ingest_process import IngestProcess
from memtrace_server.storage.sql import (
    ALL_TIME,
    CONFLICTS,
    MAX_COALESCED,
    MEMORY_COLUMNS,
    MEMORY_FIELDS,
    MEMORY_INSERT_COLUMNS,
    NewMemory,
    Op,
    Result,
    SqlStore,
    Steps,
    Stmt,
    Tally,
    load_json,
    marks,
    memory_values,
)

T = TypeVar("T")
log = logging.getLogger("memtrace.storage")
# A write waiting for the writer: the work, and the future its caller awaits on its loop.
Pending = tuple[Op[Any] | MemoryBatch, asyncio.AbstractEventLoop, asyncio.Future[Any]]
Outcome = tuple[bool, Any]  # (True, value) or (False, the exception to raise)

MAX_GROUP = 256
# FTS5 keeps an erased memory's index entries (and a delete mark for each) until it merges
# the segments holding them: after 100,000 memories of an org were erased, its substring
# pages at 1M took 5.9 ms instead of 2.5. An erase of at least ``MERGE_ERASED`` memories
# has the writer merge the full-text indexes into one segment each once it has had no
# write for ``MERGE_IDLE``, ``MERGE_PAGES`` pages of work a transaction (a few
# milliseconds; at 1M the whole merge is about 8 s of writing, an ``optimize`` in one go
# held the lock that long).
MERGE_ERASED = 1000
# Ordinary writes leave each index a dozen segments at 1M (FTS5's automerge keeps up to
# three a level), and a read seeks each one: merged into one, a loaded 1M store's substring
# pages took 1.8-1.9 ms instead of 2.6-3.4, its busy agent's ranked query 13.4 instead of
# 15-16. So do writes of ``MERGE_WRITTEN`` memories, or of a tenth of the store if more,
# since the last merge (each merge rewrites the indexes whole: 9 s for both at 1M).
MERGE_WRITTEN = 10_000
MERGE_IDLE = 1.0  # seconds without a write before the writer starts or resumes merging
MERGE_PAGES = 256
MERGE_ON_CLOSE = 10.0  # seconds closing the store may spend finishing such a merge
FULL_TEXT = ("memories_trigram", "memory_terms")
# After a commit, the writer waits (at most this long, in seconds) for each loop it answered
# to run the callers on before its next transaction: see ``_answer``.
ANSWER_WAIT = 0.005
# Below this many memories of an org, a metadata value drives a filtered list (see
# ``time_ordered_source``); counting up to it reads at most this many index entries.
RARE_VALUE = 500
RARE_NEEDLE = 2000  # a substring in fewer memories than this is found through its trigrams
NEEDLE_TRIGRAMS = 12  # trigrams of a long substring looked up (the rest is left to instr())
# A substring page of an org or an agent first reads this many pages of the scope's newest
# memories (a common substring fills it there), then walks the scope's history back by weeks
# through the trigram index, whose rows carry a token of their org's week and one of their
# agent's, at most ``WALK_WEEKS`` weeks a statement (``SQLiteStore.recent_page``).
QUICK_PAGES = 4
WEEK_NS = 7 * 86_400 * 10**9
WALK_WEEKS = 64
RATE_MATCHES = 8  # matches the walk has found before their rate sizes its next stretch
# A pool's cost grows with the query's terms up to TERM_POOLS (RANKED_POOL candidates a
# term, each scored in Python), bm25()'s with its matches (2-3 µs each): at 1M, a query of
# 15 terms and 7,347 matches took 182 ms pooled (a pool for every term) and 25 ms by bm25().
# So a query's terms past TERM_POOLS raise its bound no further.
BM25_MATCHES = 2000  # a query with fewer matches in its org per term is ranked by bm25(),
SCOPE_WALK = 20_000  # an agent's with its scope token in the match up to this many memories,
TERM_WALK = 10_000  # and then while its org has fewer matches than this;
EXACT = 1000  # an agent's query with fewer matches is ranked over all of them in Python,
RANKED_POOL = 250  # else the most recent matches of each term are ranked,
TERM_POOLS = 6  # (of a query's rarest terms in the scope; the rest share one pool)
WHOLE_POOL = 100  # fewer where the org's matches are all the scope's (see ``ranked``),
PAIRED_TERMS = 5  # and those holding two of the rarest terms,
PAIRED_SPAN = 50  # among the scope's last windows of memories this many times longer
PAIRED_MATCHES = 3000  # (fewer, where they hold more matches than this of either term)
PAIRED_WALK = 10_000  # (a pair's AND, when its rarer term has fewer matches than this)
WINDOW = 2000  # recent memories of the scope that weigh the terms of a pooled ranking
# A ranked query with a time window holding at most this many memories of its scope ranks
# the window's matches whole (see ``_ranked_window``),
WINDOW_RANKED = 5_000
# and one holding at most this many ranks only the matches between the window's least and
# greatest rid (reading the window's rids costs 0.05 µs each, bm25() about 1 µs a match).
SPAN_WINDOW = 20_000
BM25 = f"bm25(memory_terms, 0.0, 1.0, {LABEL_WEIGHT}, {CONTEXT_WEIGHT})"  # scope, then text
Row = tuple[Any, ...]  # a ranked candidate: rid, time, then content, labels, context
ORG_TALLY = ("", "")  # agent and memory type of an org's own tally row (no agent id is empty)
# SQLite's result codes (the sqlite3 module names them only from Python 3.11).
SQLITE_FULL = 13
SQLITE_CONSTRAINT_FOREIGNKEY = 787


def _translate(exc: sqlite3.Error) -> ApiError:
    """The store's error for a driver error: the one place SQLite errors are read."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.IntegrityError):
        foreign = (
            code == SQLITE_CONSTRAINT_FOREIGNKEY if code is not None else "FOREIGN KEY" in str(exc)
        )
        return MissingReference(str(exc)) if foreign else DuplicateName(str(exc))
    if code is not None and code & 0xFF == SQLITE_FULL:
        return StoreFull(f"write failed: {exc}")
    return StoreError(f"sqlite: {exc}")


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise _translate(exc) from exc


def _execute(conn: sqlite3.Connection, stmt: Stmt) -> Result:
    if stmt.together:
        return Result([], 0, tuple(_execute(conn, part) for part in stmt.together))
    if stmt.many:
        return Result([], conn.executemany(stmt.sql, stmt.params).rowcount)
    cursor = conn.execute(stmt.sql, stmt.params)
    return Result(cursor.fetchall(), cursor.rowcount)


def _drive(conn: sqlite3.Connection, op: Op[T]) -> tuple[T, bool]:
    """Run an op's statements on ``conn``: its value, and whether to undo its writes."""
    steps = Steps(op)
    while (stmt := steps.next()) is not None:
        try:
            with _translated():
                steps.result = _execute(conn, stmt)
        except CONFLICTS as exc:
            steps.error = exc
    return steps.value, steps.handled


def _run_alone(conn: sqlite3.Connection, op: Op[T], *, shared: bool = True) -> Outcome:
    """Run an op under its own savepoint: (True, its value) or (False, its error), its
    writes undone on error. A store failure (disk, I/O) is raised: it ends the transaction.

    When the op is the transaction's only write (not ``shared``), the transaction is its
    savepoint: undoing rolls it back and begins another, and no statement journal is kept
    of the pages it changes (a savepoint copies each one it touches first).
    """
    return _attempt(conn, op, shared)[0]


def _attempt(conn: sqlite3.Connection, op: Op[T], shared: bool) -> tuple[Outcome, bool]:
    """``_run_alone``'s outcome, and whether the op's writes were undone."""
    if shared:
        conn.execute("SAVEPOINT op")
    outcome: Outcome
    try:
        value, undo = _drive(conn, op)
        outcome = (True, value)
    except StoreError:
        raise
    except Exception as exc:
        undo = True
        outcome = (False, exc)
    if shared:
        if undo:
            conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
    elif undo:
        conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")
    return outcome, undo


def _answer(group: list[Pending], outcomes: dict[int, Outcome]) -> None:
    """Hand a group's outcomes to the callers' loops: one wake-up per loop for the whole
    group (a wake-up per future took a tenth of the writer's time). Then wait, at most
    ``ANSWER_WAIT``, until each loop has run its callers on (their responses written): the
    writer's next transaction and a loop answering the last one both want the GIL, and
    taking turns by the statement slowed both (one worker's single POSTs at c=32: 1,754
    requests a second without the wait, 2,067 with it, in alternating runs)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
    for index, (_, loop, future) in enumerate(group):
        by_loop.setdefault(loop, []).append((future, outcomes[index]))
    answered = []
    for loop, answers in by_loop.items():
        ran = threading.Event()
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
            loop.call_soon_threadsafe(_settle, answers, ran)
            answered.append(ran)
    deadline = time.monotonic() + ANSWER_WAIT
    for ran in answered:
        ran.wait(max(deadline - time.monotonic(), 0.0))


def _settle(answers: list[tuple[asyncio.Future[Any], Outcome]], ran: threading.Event) -> None:
    """On the callers' loop: resolve each future (unless its caller gave up), then mark
    ``ran`` once the callers it woke have run (their wake-ups are queued before it)."""
    for future, (ok, value) in answers:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    asyncio.get_running_loop().call_soon(ran.set)


def _chunks(batches: list[tuple[int, MemoryBatch]]) -> Iterator[list[tuple[int, MemoryBatch]]]:
    """Consecutive calls of at most ``MAX_COALESCED`` memories together (a larger call alone)."""
    chunk: list[tuple[int, MemoryBatch]] = []
    size = 0
    for item in batches:
        n = len(item[1].memories)
        if chunk and size + n > MAX_COALESCED:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        yield chunk


def _typed(value: Any) -> tuple[str, Any]:
    """A metadata scalar as (type, SQL value): JSON equality, so true is not 1."""
    if value is None:
        return "z", None
    if isinstance(value, bool):
        return "b", int(value)
    if isinstance(value, int | float):
        return "n", value
    return "s", value


def _meta_rows(m: MemoryRecord, org_id: str, rid: int) -> list[tuple[Any, ...]]:
    scalars = (str, int, float, bool, type(None))
    return [
        (org_id, field, *_typed(value), m.time_ns, rid)
        for field, value in (m.metadata or {}).items()
        if isinstance(value, scalars)
    ]


def _window(flt: MemoryFilter, alias: str) -> tuple[str, list[Any]]:
    """The filter's time bounds on an index table that carries ``time``."""
    bounds, params = "", []
    if flt.since_ns is not None:
        bounds += f" AND {alias}.time > ?"
        params.append(flt.since_ns)
    if flt.until_ns is not None:
        bounds += f" AND {alias}.time < ?"
        params.append(flt.until_ns)
    return bounds, params


@dataclass(frozen=True)
class Window:
    """A ranked query's time window in its scope (``SQLiteStore._window_span``)."""

    low: int  # the least rid of its memories
    high: int  # the greatest
    rids: set[int] | None  # all of them, when few


@dataclass(frozen=True)
class IndexEntries:
    """A tag or metadata value of a filter as index entries (each with the ``org_id``,
    ``time`` and ``rid`` of its memory): the table, the conditions on alias ``x0`` that
    select its entries (``org_id`` first, then ``key``), and a probe of its index."""

    table: str
    condition: str
    key: list[Any]
    template: str  # the probe, ``{a}`` standing for the alias it looks up

    def probe(self, alias: str) -> str:
        """That the memory of ``alias`` (a memory, or another value's entry) holds this
        value: one lookup by the index's full key, no table row read."""
        return self.template.format(a=alias)


def _index_entries(flt: MemoryFilter) -> list[IndexEntries]:
    """The index entries of each tag and metadata value of the filter."""
    entries = [
        IndexEntries(
            "memory_tags",
            "x0.org_id = ? AND x0.tag = ?",
            [tag],
            "EXISTS (SELECT 1 FROM memory_tags t WHERE t.org_id = {a}.org_id AND t.tag = ?"
            " AND t.time = {a}.time AND t.rid = {a}.rid)",
        )
        for tag in flt.tags
    ]
    entries.extend(
        IndexEntries(
            "memory_meta",
            "x0.org_id = ? AND x0.field = ? AND x0.vtype = ? AND x0.value IS ?",
            [field, *_typed(value)],
            "EXISTS (SELECT 1 FROM memory_meta x WHERE x.org_id = {a}.org_id AND x.field = ?"
            " AND x.vtype = ? AND x.value IS ? AND x.time = {a}.time AND x.rid = {a}.rid)",
        )
        for field, value in flt.metadata
    )
    return entries


def _org_words(org_id: str, text: str) -> str:
    """``core.text.org_words`` for an org, as a SQL function."""
    return org_words(term_prefix(org_id), text)


def _text_row(org_id: str, agent_id: str, rid: int, text: tuple[str, str, str]) -> Row:
    """A ``memory_terms`` row: the memory's scope tokens, and its text as the org's words."""
    prefix = term_prefix(org_id)
    scope = f"{org_scope(org_id)} {agent_scope(org_id, agent_id)}"
    return (rid, scope, *(org_words(prefix, column) for column in text))


def _walks_weeks(flt: MemoryFilter) -> bool:
    """Whether a list is a substring page that may walk its scope's weeks: newest first, of
    a substring of three characters or more (the trigram indexes' least), and no session,
    key, tags or metadata (those narrow it through their own indexes)."""
    return (
        len(flt.content_contains or "") >= 3
        and not flt.query
        and not flt.ascending
        and not flt.tags
        and not flt.metadata
        and flt.key is None
        and flt.session_id is None
    )


@functools.lru_cache(maxsize=4096)  # a write's agents write in the same weeks, mostly
def _week_token(scope: str, week: int) -> str:
    """A scope's week as one trigram of the substring index: three characters of Unicode's
    supplementary planes holding 60 bits of a hash of both, which the tokenizer keeps as
    they are. A memory's own text holds one only by chance, and then the filter decides."""
    digest = hashlib.blake2b(f"{scope}|{week}".encode(), digest_size=8).digest()
    bits = int.from_bytes(digest, "big")
    low, middle, high = bits & 0xFFFFF, bits >> 20 & 0xFFFFF, bits >> 40 & 0xFFFFF
    return chr(0x10000 + low) + chr(0x10000 + middle) + chr(0x10000 + high)


def _substring_scopes(org_id: str, agent_id: str, time_ns: int) -> str:
    """The ``scope`` column of a memory's ``memories_trigram`` row: the tokens of its
    org's week and of its agent's (a SQL function for the migration too)."""
    week = time_ns // WEEK_NS
    return _week_token(org_scope(org_id), week) + _week_token(agent_scope(org_id, agent_id), week)


def _trigram_match(needle: str) -> str:
    """An FTS5 query for memories holding every trigram of ``needle`` (at most
    ``NEEDLE_TRIGRAMS`` of them, spread over it); empty when it is too short."""
    grams = list(dict.fromkeys(needle[i : i + 3] for i in range(len(needle) - 2)))
    if len(grams) > NEEDLE_TRIGRAMS:
        step = len(grams) / NEEDLE_TRIGRAMS
        grams = [grams[int(i * step)] for i in range(NEEDLE_TRIGRAMS)]
    return " AND ".join('"' + g.replace('"', '""') + '"' for g in grams)


class SQLiteStore(SqlStore):
    """The embedded default store, in one SQLite file."""

    backend = "sqlite"
    score_sign = -1.0  # bm25() is smaller for better matches
    # Without statistics the planner takes the key's (org, agent) prefix for ``hour = ?``
    # and walks all of an agent's hours: 8 ms for an agent of 2.5 years.
    tallies_by_hour = "agent_tallies INDEXED BY agent_tallies_hour"

    def contains(self, needle: str) -> tuple[str, Any]:
        """``instr()``: the trigram index narrows first where it can (``recent_page``)."""
        return "instr(m.content, ?) > 0", needle

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        readers: int = 4,
        ingest_process: bool = False,
    ) -> None:
        """``ingest_process``: memory inserts go to a process of their own
        (``storage.ingest_process``) while the store is open."""
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        if self.synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"invalid synchronous setting: {synchronous}")
        self._ingest = IngestProcess(self.path, self.synchronous) if ingest_process else None
        self._inserting = 0  # inserts of this process not yet answered
        self._reader_count = readers
        self._queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._turn: int | None = None  # the writers' turn file, locked around each transaction
        self._merged = threading.Event()  # set while no merge of the full-text indexes waits
        self._merged.set()
        # a side file that exists while a merge waits (``_merge_later``), and whether this
        # opening's own writes asked for one
        self._merge_mark = Path(f"{self.path}-merge")
        self._merge_asked = False
        self._written = 0  # memories the writer wrote since the last merge

    # lifecycle

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        # 16 MiB of page cache per connection (5 connections): the OS caches the file too.
        conn.execute("PRAGMA cache_size = -16384")
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _open_sync(self, turn: int) -> sqlite3.Connection:
        # Under the writers' turn lock: a new file's switch to WAL needs it to itself, and
        # SQLite refuses it at once ("database is locked") while another process migrates.
        fcntl.flock(turn, fcntl.LOCK_EX)
        try:
            conn = self._connect()
            conn.create_function("org_words", 2, _org_words, deterministic=True)  # migrations
            conn.create_function("substring_scopes", 3, _substring_scopes, deterministic=True)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA wal_autocheckpoint = 8192")
            conn.execute("BEGIN IMMEDIATE")  # the write lock: one process migrates at a time
            try:
                _drive(conn, self._migrate(int(time.time())))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return conn
        finally:
            fcntl.flock(turn, fcntl.LOCK_UN)

    async def open(self) -> None:
        """Create the file if needed, apply migrations and start the writer and readers."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            turn = os.open(f"{self.path}-writer", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        try:
            conn = await asyncio.to_thread(self._open_sync, turn)
        except (sqlite3.Error, ApiError) as exc:
            os.close(turn)
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        except BaseException:
            os.close(turn)
            raise
        self._turn = turn
        if self._merge_mark.exists():  # a merge the store was closed before finishing
            self._merged.clear()
        self._writer = threading.Thread(
            target=self._write_loop, args=(conn,), name="memtrace-sqlite-writer", daemon=True
        )
        self._writer.start()
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._reader_count, thread_name_prefix="memtrace-sqlite-reader"
        )
        if self._ingest is not None:
            try:
                await self._ingest.start()
            except StoreError as exc:  # the writer thread takes the inserts
                log.error("%s; memories are inserted by the server's writer", exc)

    async def close(self) -> None:
        """Drain queued writes, stop the threads and close every connection."""
        if self._ingest is not None:
            await self._ingest.close()
        if self._writer is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._turn is not None:
            os.close(self._turn)
            self._turn = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # running ops

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        stopping = False
        idle_since = time.monotonic()
        while not stopping:
            if self._merged.is_set():
                item = self._queue.get()
            else:
                try:  # a merge waits for a quiet moment, and pauses for every write
                    item = self._queue.get(
                        timeout=max(idle_since + MERGE_IDLE - time.monotonic(), 0)
                    )
                except queue.Empty:
                    self._merge_step(conn)
                    continue
            if item is None:
                break
            stopping = self._run_group(conn, [item])
            idle_since = time.monotonic()
        # A store closed right after the writes that asked for a merge (a restart, the bench
        # between sizes, a bulk load) works on it first, a while. One only resumed from the
        # side file is left to the next opening: an admin command opens the store briefly.
        deadline = time.monotonic() + MERGE_ON_CLOSE
        while not self._merged.is_set() and self._merge_asked and time.monotonic() < deadline:
            self._merge_step(conn)

    def _merge_step(self, conn: sqlite3.Connection) -> None:
        """``MERGE_PAGES`` pages of merging each full-text index toward one segment, in a
        transaction of its own; the merge is done once a step changes nothing (FTS5 counts
        fewer than two changes for a merge that did no work)."""
        assert self._turn is not None
        fcntl.flock(self._turn, fcntl.LOCK_EX)
        try:
            worked = False
            conn.execute("BEGIN IMMEDIATE")
            for table in FULL_TEXT:
                before = conn.total_changes
                conn.execute(
                    f"INSERT INTO {table} ({table}, rank) VALUES ('merge', ?)", (-MERGE_PAGES,)
                )
                worked = worked or conn.total_changes - before >= 2
            conn.execute("COMMIT")
            if not worked:
                self._written = 0
                self._merge_done()
        except sqlite3.Error as exc:
            log.error("sqlite full-text merge failed: %s", exc)
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self._written = 0  # not retried at once: the next large erase or writes ask again
            self._merge_done()
        finally:
            fcntl.flock(self._turn, fcntl.LOCK_UN)

    def _merge_later(self) -> None:
        """Have the writer merge the full-text indexes once it is idle. A file beside the
        store marks the merge until it is done, so one the store was closed before finishing
        (``MERGE_ON_CLOSE`` is short of a merge at a few million memories, and a bulk load
        or a restart may close it at any time) is resumed after the store opens again."""
        if self._merged.is_set():
            with contextlib.suppress(OSError):
                self._merge_mark.touch()
        self._merged.clear()
        self._merge_asked = True

    def _merge_done(self) -> None:
        self._merged.set()
        with contextlib.suppress(OSError):
            self._merge_mark.unlink(missing_ok=True)

    def _take(self, group: list[Pending]) -> bool:
        """Add the writes waiting in the queue to ``group`` (up to ``MAX_GROUP``); True when
        the close mark was among them."""
        while len(group) < MAX_GROUP:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            group.append(item)
        return False

    def _run_group(self, conn: sqlite3.Connection, group: list[Pending]) -> bool:
        """One transaction for every pending write: each op on its own, then every pending
        ``insert_memories`` call coalesced; callers are answered only after COMMIT. True
        when the store is closing (the queue held its close mark)."""
        # Writers of other processes on this file (``--workers``, the admin CLI) take turns
        # through a lock they wait for in the kernel: SQLite's own busy handler polls with
        # sleeps of up to 100 ms, so its waiters missed most of the other's idle moments.
        # The writes that arrive while this one waits for its turn join its transaction,
        # so a turn's fixed cost (COMMIT, its pages, its fsync) is shared by more of them.
        assert self._turn is not None
        fcntl.flock(self._turn, fcntl.LOCK_EX)
        try:
            stopping = self._take(group)
            # A caller that gave up before its write started is skipped (checked from this
            # thread, so one that gives up just after is still written, and not answered).
            group = [item for item in group if not item[2].cancelled()]
            outcomes = self._transaction(conn, group) if group else {}
        finally:
            fcntl.flock(self._turn, fcntl.LOCK_UN)
        _answer(group, outcomes)
        return stopping

    def _transaction(self, conn: sqlite3.Connection, group: list[Pending]) -> dict[int, Outcome]:
        """Run ``group`` in one transaction: the outcome of each of its writes."""
        ops = [(i, w) for i, (w, _, _) in enumerate(group) if not isinstance(w, MemoryBatch)]
        batches = [(i, w) for i, (w, _, _) in enumerate(group) if isinstance(w, MemoryBatch)]
        outcomes: dict[int, Outcome] = {}
        try:
            conn.execute("BEGIN IMMEDIATE")
            chunks = list(_chunks(batches))
            for index, op in ops:
                outcomes[index] = _run_alone(conn, op, shared=len(group) > 1)
            for chunk in chunks:
                answers = self._run_batches(conn, chunk, shared=bool(ops) or len(chunks) > 1)
                outcomes.update(zip((i for i, _ in chunk), answers, strict=True))
            conn.execute("COMMIT")
        except Exception as exc:
            log.error("sqlite write transaction failed: %s", exc)
            failure = _translate(exc) if isinstance(exc, sqlite3.Error) else exc
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            outcomes = dict.fromkeys(range(len(group)), (False, failure))
        return outcomes

    def _run_batches(
        self, conn: sqlite3.Connection, chunk: list[tuple[int, MemoryBatch]], *, shared: bool
    ) -> list[Outcome]:
        """Coalesced calls: one op for all of them under one savepoint (the transaction
        itself unless other writes ``shared`` it); if it fails on one call's account, each
        call again under its own, so only that one fails."""
        if len(chunk) > 1:
            (_, values), undone = _attempt(
                conn, self._insert_batches([b for _, b in chunk]), shared
            )
            if not undone:
                return [(True, value) for value in values]
        alone = len(chunk) == 1 and not shared
        ran = [_run_alone(conn, self._insert_batches([b]), shared=not alone) for _, b in chunk]
        return [(ok, value[0] if ok else value) for ok, value in ran]

    async def _write(self, op: Op[T]) -> T:
        value: T = await self.queued(op)
        return value

    async def _insert_batch(self, batch: MemoryBatch) -> list[bool]:
        """Queued for the writer, which coalesces it with the other calls pending: the
        ingest process's writer, while it runs, when another insert is in flight (under
        load); else this process's (alone, a hop less: at c=1 over HTTP 0.9 against 1.1-1.3 ms
        a POST)."""
        alone = not self._inserting
        self._inserting += 1
        try:
            if self._ingest is not None and self._ingest.alive and not alone:
                return await self._ingest.insert(batch)
            result: list[bool] = await self.queued(batch)
            return result
        finally:
            self._inserting -= 1

    def queued(self, work: Op[Any] | MemoryBatch) -> asyncio.Future[Any]:
        """``work`` queued for the writer: a future of its outcome, set after COMMIT."""
        if self._writer is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put((work, loop, future))
        return future

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
        return conn

    def _run_read(self, op: Op[T]) -> T:
        with _translated():
            return _drive(self._reader_conn(), op)[0]

    async def _read(self, op: Op[T], *, brief: bool = False) -> T:
        """A brief read runs right here, on its own connection of the caller's thread: the
        hand-off to a reader thread and back cost more than such a read (get by id at c=32:
        2,430 against 5,100 requests/s). Others go to the readers, so that a long one never
        holds up the event loop."""
        if self._readers is None:
            raise StoreError("store is not open")
        if brief:
            return self._run_read(op)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, op)

    # dialect hooks

    def tag_value(self, tags: tuple[str, ...]) -> Any:
        """Tags as JSON text (NULL when none)."""
        return orjson.dumps(list(tags)).decode() if tags else None

    def tags_of(self, value: Any) -> tuple[str, ...]:
        """Tags from JSON text."""
        tags = load_json(value)
        return tuple(tags) if tags else ()

    def tags_clause(self, org_id: str, flt: MemoryFilter) -> tuple[list[str], list[Any]]:
        """A probe of ``memory_tags`` per tag and row (the sparsest tag may drive the read
        instead: ``time_ordered_source``)."""
        entries = _index_entries(replace(flt, metadata=()))
        return [e.probe("m") for e in entries], [p for e in entries for p in e.key]

    def metadata_clause(
        self, org_id: str, fields: Sequence[tuple[str, Any]]
    ) -> tuple[list[str], list[Any]]:
        """A probe of ``memory_meta`` per field (scalar fields are indexed on write)."""
        entries = _index_entries(MemoryFilter(metadata=tuple(fields)))
        return [e.probe("m") for e in entries], [p for e in entries for p in e.key]

    def _sparseness(self, rows: str, params: list[Any], flt: MemoryFilter) -> Op[tuple[int, int]]:
        """How sparse a time-ordered range (on alias ``x0``) is in the filter's window, from
        at most ``RARE_VALUE`` of its entries in the read's order: ``(0, count)`` when it
        holds fewer, else ``(1, how near the last of them is to the start of the read)``;
        the smaller, the fewer entries a walk of it meets before a page is full."""
        bounds, bound_params = _window(flt, "x0")
        direction = "ASC" if flt.ascending else "DESC"
        found = yield Stmt(
            f"SELECT count(*), min(time), max(time) FROM (SELECT x0.time FROM {rows}{bounds}"
            f" ORDER BY x0.time {direction} LIMIT ?)",
            [*params, *bound_params, RARE_VALUE],
        )
        count, oldest, newest = found.rows[0]
        if count < RARE_VALUE:
            return 0, int(count)
        return (1, -int(newest)) if flt.ascending else (1, int(oldest))

    def time_ordered_source(
        self, org_id: str, flt: MemoryFilter
    ) -> Op[tuple[str, list[Any], str, MemoryFilter] | None]:
        """The sparsest tag or metadata value drives the read: its index entries walked in
        time order, each probed for the filter's other values by their index keys, and only
        the memories holding them all read, so a page stops after about ``limit`` divided by
        the share of its entries that match. A value held by fewer than ``RARE_VALUE``
        memories of the org (in the filter's window) always drives; a commoner one only when
        the agent's or session's own memories are denser still (and no key is asked for).
        A substring whose trigrams are in fewer than ``RARE_NEEDLE`` memories, and rarer
        than any value, drives instead: its memories, sorted (``instr()`` still decides)."""
        entries = _index_entries(flt)
        sparsest: tuple[tuple[int, int], int] | None = None
        for index, entry in enumerate(entries):
            rows = f"{entry.table} x0 WHERE {entry.condition}"
            spread = yield from self._sparseness(rows, [org_id, *entry.key], flt)
            if sparsest is None or spread < sparsest[0]:
                sparsest = (spread, index)
        rare = sparsest[0][1] if sparsest is not None and sparsest[0][0] == 0 else None
        needle = _trigram_match(flt.content_contains or "")
        if needle:  # matched once: the rids themselves, not a count and the match again
            found = yield Stmt(
                "SELECT count(*), json_group_array(rowid) FROM (SELECT rowid FROM"
                " memories_trigram WHERE memories_trigram MATCH ? LIMIT ?)",
                [needle, RARE_NEEDLE],
            )
            count, rids = found.rows[0]
            if count < RARE_NEEDLE and (rare is None or count < rare):
                source = "json_each(?) x0 CROSS JOIN memories m ON m.rid = x0.value"
                return source, [rids], "m", flt
        if sparsest is None:
            return None
        spread, index = sparsest
        if rare is None:
            if flt.key is not None:
                return None
            scope = next(
                (
                    (column, value)
                    for column, value in (
                        ("session_id", flt.session_id),
                        ("agent_id", flt.agent_id),
                    )
                    if value is not None
                ),
                None,
            )
            if scope is not None:
                rows = f"memories x0 WHERE x0.org_id = ? AND x0.{scope[0]} = ?"
                if (yield from self._sparseness(rows, [org_id, scope[1]], flt)) <= spread:
                    return None
        entry = entries[index]
        bounds, bound_params = _window(flt, "x0")
        others = [e for i, e in enumerate(entries) if i != index]
        on = f"{entry.condition}{bounds}" + "".join(f" AND {e.probe('x0')}" for e in others)
        params = [org_id, *entry.key, *bound_params, *(p for e in others for p in e.key)]
        source = f"{entry.table} x0 CROSS JOIN memories m ON m.rid = x0.rid AND {on}"
        return source, params, "x0", replace(flt, tags=(), metadata=())

    def recent_page(self, org_id: str, flt: MemoryFilter) -> Op[list[Row] | None]:
        """A substring page of an org or an agent (``_walks_weeks``; None for other reads).
        The scope's newest ``QUICK_PAGES`` pages of memories are read first: a common
        substring fills its page there. Otherwise the scope's history is walked back, a
        statement a stretch of weeks (``_week_matches``), each reading only the matches of
        its weeks with the filter applied, until a stretch ends with the page full. The first stretch is the newest
        week; each next one is as long as the walk so far until it has ``RATE_MATCHES``
        matches, then as long as the page still lacks at their rate, a quarter more, at
        most ``WALK_WEEKS``. The work follows the page, not the history: on the bench's 1M
        SQLite store the store's part of a page of 50 went from 4.9 to 2.1 ms for an org of
        60,000 memories, from 5.6 to 1.5 ms for its busy agent of 400,000."""
        if not _walks_weeks(flt):
            return None
        want = flt.offset + flt.limit
        where, params = self.memory_filter(org_id, flt)
        rest, rest_params = self.memory_filter(org_id, replace(flt, content_contains=None))
        contains, needle = self.contains(flt.content_contains or "")
        newest_first = "ORDER BY m.time DESC, m.rid DESC"
        quick = yield Stmt(
            f"SELECT {MEMORY_COLUMNS} FROM (SELECT m.rid, {MEMORY_COLUMNS} FROM memories m"
            f" WHERE {rest} {newest_first} LIMIT ?) m WHERE {contains}"
            f" {newest_first} LIMIT ? OFFSET ?",
            [*rest_params, QUICK_PAGES * want, needle, flt.limit, flt.offset],
        )
        if len(quick.rows) == flt.limit:
            return quick.rows
        scope, scope_params = "m.org_id = ?", [org_id]
        if flt.agent_id is not None:
            scope, scope_params = f"{scope} AND m.agent_id = ?", [org_id, flt.agent_id]
        ends = yield Stmt(
            f"SELECT (SELECT max(m.time) FROM memories m WHERE {scope}),"
            f" (SELECT min(m.time) FROM memories m WHERE {scope})",
            scope_params * 2,
        )
        newest, oldest = ends.rows[0]
        if newest is None:
            return []
        if flt.until_ns is not None:
            newest = min(newest, flt.until_ns - 1)
        if flt.since_ns is not None:
            oldest = max(oldest, flt.since_ns + 1)
        high, low = newest // WEEK_NS, oldest // WEEK_NS
        hits: list[Row] = []
        weeks = 1
        while high >= low and len(hits) < want:
            last = max(low, high - weeks + 1)
            found = yield self._week_matches(org_id, flt, where, params, range(high, last - 1, -1))
            hits.extend(found.rows)
            high, walked = last - 1, newest + 1 - last * WEEK_NS
            # The time the page still lacks at the rate found so far, a quarter more, once
            # that rate rests on a few matches; until then as long again as walked.
            found_enough = len(hits) >= RATE_MATCHES
            lacking = walked * (want - len(hits)) * 5 // 4 // len(hits) if found_enough else walked
            weeks = max(1, min(WALK_WEEKS, -(-lacking // WEEK_NS)))
        hits.sort(key=lambda hit: (hit[1], hit[0]), reverse=True)
        return [hit[2:] for hit in hits[flt.offset : want]]

    def _week_matches(
        self, org_id: str, flt: MemoryFilter, where: str, params: list[Any], weeks: range
    ) -> Stmt:
        """``rid``, ``time`` and ``MEMORY_COLUMNS`` of the memories passing ``where`` (the filter, its
        substring included) in ``weeks`` (numbers of ``WEEK_NS`` since the epoch, newest
        first): the trigram index's rows of the needle and of the scope's weeks (the tokens
        of the org's weeks, or of the agent's), each memory read once by rid."""
        scope = org_scope(org_id) if flt.agent_id is None else agent_scope(org_id, flt.agent_id)
        tokens = " OR ".join(f'"{_week_token(scope, week)}"' for week in weeks)
        return Stmt(
            f"SELECT m.rid, m.time, {MEMORY_COLUMNS} FROM memories_trigram"
            " CROSS JOIN memories m ON m.rid = memories_trigram.rowid"
            f" WHERE memories_trigram MATCH ? AND {where} AND m.time >= ? AND m.time < ?",
            [
                f"({tokens}) AND {_trigram_match(flt.content_contains or '')}",
                *params,
                weeks[-1] * WEEK_NS,
                (weeks[0] + 1) * WEEK_NS,
            ],
        )

    def ranked(self, org_id: str, flt: MemoryFilter, where: str, params: list[Any]) -> Op[Result]:
        """BM25 over the org's own words (``core.text.term_prefix``), the agent's scope token
        inside the match when there is one. The work follows the matches in the org or the
        agent, never the store.

        FTS5's ``bm25()`` ranks every match when the org has fewer than ``BM25_MATCHES``
        for each term of the query.
        It counts each term's matches in the org (so its term weights are the org's own,
        while the number of rows and their average length it reads are the whole index's),
        and the matches of an agent's scope token: an agent of up to ``SCOPE_WALK``
        memories keeps the token in its match, and is ranked so while its org has fewer
        than ``TERM_WALK`` matches; a larger agent's memories are picked from the org's
        ranking by the filter. Past those bounds, an agent's query with fewer than
        ``EXACT`` matches is ranked over all of them by ``core.ranking``, each term weighed
        by its share of the agent's memories. Otherwise the ranking moves to a pool: the
        ``RANKED_POOL`` (``WHOLE_POOL`` where the org's matches are all the scope's) most
        recent matches of each of its ``TERM_POOLS`` rarest terms, of any of the others, and
        of each pair of its rarest terms, weighed by how common each term is among the
        scope's recent memories. A page the pool cannot fill (a narrow filter on top) is
        ranked by ``bm25()`` over every match instead. Past the ``bm25()`` bound, a query
        with a time window holding few of the scope's memories is ranked over the window's
        matches, all of them (``_ranked_window``), before any of that.
        """
        prefix = term_prefix(org_id)
        scope = agent_scope(org_id, flt.agent_id) if flt.agent_id is not None else org_scope(org_id)

        def match(terms: Sequence[str], join: str = " OR ", *, agent: bool = True) -> str:
            quoted = join.join('"' + (prefix + t).replace('"', '""') + '"' for t in terms)
            words = f"{{content labels context}}:({quoted})"
            return f'scope:"{scope}" AND {words}' if agent and flt.agent_id is not None else words

        # A window's memories lie between the least and the greatest rid of the scope's in
        # it (in a store written in time order, its newest rids): bm25() ranks the matches
        # between only, which is its whole ranking filtered by time, for less.
        window = None
        if flt.since_ns is not None or flt.until_ns is not None:
            window = yield from self._window_span(org_id, flt)
        span: tuple[str, list[Any]] = ("", [])
        if window is not None:
            span = (" AND memory_terms.rowid BETWEEN ? AND ?", [window.low, window.high])

        def everything(query: str) -> Stmt:
            return Stmt(
                f"SELECT {MEMORY_COLUMNS}, {BM25} AS rank FROM memory_terms"
                " JOIN memories m ON m.rid = memory_terms.rowid"
                f" WHERE memory_terms MATCH ?{span[0]} AND {where}"
                " ORDER BY rank, m.time DESC LIMIT ? OFFSET ?",
                [query, *span[1], *params, flt.limit, flt.offset],
            )

        recent = "SELECT rowid FROM memory_terms WHERE memory_terms MATCH ? ORDER BY rowid DESC"

        def matches_up_to(query: str, most: int) -> Op[int]:
            sql = "SELECT count(*) FROM (SELECT 1 FROM memory_terms WHERE memory_terms MATCH ? LIMIT ?)"
            return int((yield Stmt(sql, (query, most))).rows[0][0])

        size, bound = 0, BM25_MATCHES * min(len(flt.query), TERM_POOLS)
        if flt.agent_id is not None:
            size = yield from self._scope_size(org_id, flt.agent_id)
            bound = TERM_WALK if size <= SCOPE_WALK else bound
        in_org = yield from matches_up_to(match(flt.query, agent=False), bound)
        org_size = 0
        if size > SCOPE_WALK:
            org_size = yield from self._scope_size(org_id, None)
        if in_org < bound:
            query, share = match(flt.query), 1.0
            if size > SCOPE_WALK:
                # An agent that holds every memory of its org has every match of it: not
                # counted again (intersecting its scope's list cost as much as the first).
                mine = in_org
                if size < org_size:
                    mine = yield from matches_up_to(query, bound)
                query, share = match(flt.query, agent=False), mine / max(in_org, 1)
            best = self._best(flt, query, everything(query), where, params, share, span)
            return (yield from best)
        if window is not None and window.rids is not None:
            query = match(flt.query, agent=False)
            found = yield from self._ranked_window(flt, window, query, where, params)
            if found is not None:
                return found
        if flt.agent_id is not None and not org_size:
            org_size = yield from self._scope_size(org_id, None)
        # An agent's matches are at least its org's less the org's other memories: they are
        # read (to be ranked all when fewer than EXACT) unless that leaves EXACT or more (the
        # 1M bench's busy agent, its org's only one: 0.9 ms a query).
        if in_org - (org_size - size) < EXACT:
            every = (yield Stmt(f"{recent} LIMIT ?", (match(flt.query), EXACT))).rows
            if len(every) < EXACT:
                if flt.agent_id is None:
                    size = yield from self._scope_size(org_id, None)
                rids = [rid for (rid,) in every]
                return (yield from self._ranked_whole(flt, rids, where, params, size))
        # An agent that holds most of its org's memories is pooled from the org's matches,
        # the filter keeping its own: intersecting its dense scope list with a word's, newest
        # first, steps through the scope list (8 ms a pair for the 3M store's busy agent).
        scoped = flt.agent_id is not None and 2 * size < org_size
        # Where nearly every match of the org is the scope's (the org's own query, or an agent
        # that is 90 % of its org), no filter thins the pool: WHOLE_POOL matches a term rank as
        # well as RANKED_POOL (LoCoMo among distractors with each agent its own org, 286 of 883
        # questions pooled: R@10 62.6 either way, exact 63.1) and cost less (the 1M bench's
        # busy agent in-process: 11-13 against 7-8 ms, common words 8-9 against 4-5 ms).
        whole = flt.agent_id is None or (not scoped and 0 < 9 * org_size <= 10 * size)
        pool = max(WHOLE_POOL if whole else RANKED_POOL, 2 * (flt.limit + flt.offset))
        lists = {}
        for term in flt.query:
            found = yield Stmt(f"{recent} LIMIT ?", (match([term], agent=scoped), pool))
            lists[term] = [row[0] for row in found.rows]
        # The window: the scope's most recent memories, where each term's share is known
        # (or, for a term too common for its pool to reach the window's start, estimated).
        walked = scope if scoped else org_scope(org_id)
        # (its bounds and size read in the statement: 0.2 against 0.5 ms at 1M for its rows)
        # (and the scope's oldest rowid, which sizes the pairs' stretches below)
        top, floor, recent_count, oldest = (
            yield Stmt(
                "SELECT max(rowid), min(rowid), count(*), (SELECT rowid FROM memory_terms"
                f" WHERE memory_terms MATCH ? ORDER BY rowid LIMIT 1) FROM ({recent} LIMIT ?)",
                (f'scope:"{walked}"', f'scope:"{walked}"', WINDOW),
            )
        ).rows[0]
        matches = {}
        for term, rids in lists.items():
            if len(rids) < pool or rids[-1] <= floor:
                matches[term] = sum(1 for rid in rids if rid >= floor)
            else:
                matches[term] = pool * (top - floor + 1) // (top - rids[-1] + 1)
        weights = term_weights(flt.query, recent_count, matches)
        # A long query's commonest terms in the window share one pool, the newest matches of
        # any of them: its candidates are a few pools, not one for every term (the 1M bench's
        # busy agent's 12-word queries in-process, with the bound above: 22.7 → 16.9 ms).
        by_share = sorted(lists, key=lambda t: matches[t])
        pooled = {rid for term in by_share[:TERM_POOLS] for rid in lists[term]}
        pooled.update(heapq.nlargest(pool, {r for t in by_share[TERM_POOLS:] for r in lists[t]}))
        # Memories holding two of the rarer terms outrank those holding one: take them
        # from a longer stretch of history, ``PAIRED_SPAN`` windows (intersections are
        # small, but walking them costs as much as the terms' matches in the stretch).
        # Rarest by their share of the window: where every pool is full, the pools'
        # lengths are all the same and picked the query's first terms. FTS5's "a AND b"
        # over two common words that never meet (two event types) walked both whole
        # lists whatever its bounds on rowid: 12 ms for the 3M bench's busy agent, the
        # same for 5,000 rowids as for all, where one word's read within them took
        # 0.06 ms (an AND that finds a match stops at the bounds). So a pair whose rarer
        # term has more than ``PAIRED_WALK`` matches in the scope (by its share of the
        # window) has each term's matches in the stretch read apart and intersected, over
        # a stretch of at most about ``PAIRED_MATCHES`` of either's.
        rarest = by_share[:PAIRED_TERMS]
        history = size if scoped else org_size or (yield from self._scope_size(org_id, None))
        # The rowids a window of the scope's memories spans: its newest window's, or fewer
        # where the scope is denser over its whole history. Its newest memories may lie
        # sparse among other orgs' (the 1M bench's busy agent after other orgs' writes:
        # 2,000 over 31,747 rowids, where it holds 40 % of all the rowids before them), and
        # stretches sized by their rate then held about six times the matches meant: 13 ms
        # a pair of its event types, against 0.2 on a store where its newest lie together.
        spread = (top - oldest + 1) * max(recent_count, 1) // max(history, 1)
        width = max(1, min(top - floor + 1, spread))
        for a, b in itertools.combinations(rarest, 2):
            if min(matches[a], matches[b]) * history <= PAIRED_WALK * max(recent_count, 1):
                since = top - PAIRED_SPAN * width
                stmt = Stmt(
                    "SELECT rowid FROM memory_terms WHERE memory_terms MATCH ? AND rowid > ?"
                    " ORDER BY rowid DESC LIMIT ?",
                    (match((a, b), " AND ", agent=scoped), since, pool),
                )
            else:
                common = max(matches[a], matches[b], 1)
                since = top - min(PAIRED_SPAN, max(PAIRED_MATCHES // common, 1)) * width
                stmt = Stmt(
                    "SELECT rowid FROM memory_terms WHERE memory_terms MATCH ? AND rowid > ?"
                    " INTERSECT"
                    " SELECT rowid FROM memory_terms WHERE memory_terms MATCH ? AND rowid > ?"
                    " ORDER BY 1 DESC LIMIT ?",
                    (match([a], agent=scoped), since, match([b], agent=scoped), since, pool),
                )
            pooled.update(row[0] for row in (yield stmt).rows)
        rows = yield from self._candidates(pooled, where, params)
        if len(rows) < flt.limit + flt.offset:
            return (yield everything(match(flt.query)))
        scored = bm25([Candidate(*row[2:]) for row in rows], weights)
        return (yield from self._page(flt, rows, scored))

    def _window_span(self, org_id: str, flt: MemoryFilter) -> Op[Window | None]:
        """The scope's memories in the filter's time window, when at most ``SPAN_WINDOW``: the
        least and the greatest of their rids ((0, -1) for none), and the rids themselves when
        at most ``WINDOW_RANKED`` (as one JSON array: a row each cost three times as much,
        1.5 ms for 5,000 at 1M). None for a larger window."""
        agent = " AND m.agent_id = ?" if flt.agent_id is not None else ""
        bounds, times = _window(flt, "m")
        found = yield Stmt(
            "SELECT min(rid), max(rid), count(*),"
            " CASE WHEN count(*) <= ? THEN json_group_array(rid) END FROM"
            f" (SELECT m.rid FROM memories m WHERE m.org_id = ?{agent}{bounds} LIMIT ?)",
            [WINDOW_RANKED, org_id, *([flt.agent_id] if agent else []), *times, SPAN_WINDOW + 1],
        )
        low, high, count, rids = found.rows[0]
        if count > SPAN_WINDOW:
            return None
        listed = None if rids is None else set(orjson.loads(rids))
        return Window(low, high, listed) if count else Window(0, -1, set())

    def _ranked_window(
        self, flt: MemoryFilter, window: Window, query: str, where: str, params: list[Any]
    ) -> Op[Result | None]:
        """A ranked query's page when its time window holds at most ``WINDOW_RANKED`` of its
        scope's memories (``window.rids``) and at most ``EXACT`` of them match: those
        the word index matches, ranked whole, each term weighed by its share of the window.
        None otherwise. Ranked over the history and filtered by time after, a busy agent's
        window cost as much as its history: 34 ms at 1M for a day."""
        rids = window.rids or set()
        found = yield Stmt(
            "SELECT json_group_array(rowid) FROM memory_terms"
            " WHERE memory_terms MATCH ? AND rowid BETWEEN ? AND ?",
            (query, window.low, window.high),
        )
        hits = [rid for rid in orjson.loads(found.rows[0][0]) if rid in rids]
        if len(hits) > EXACT:
            return None
        return (yield from self._ranked_whole(flt, hits, where, params, len(rids)))

    def _ranked_whole(
        self, flt: MemoryFilter, rids: list[int], where: str, params: list[Any], size: int
    ) -> Op[Result]:
        """The page of the memories of ``rids`` that pass the filter, ranked all of them by
        ``core.ranking``, each term weighed by its share of ``size`` memories (at least
        those)."""
        rows = yield from self._candidates(rids, where, params)
        stems = {t: stem(t) for t in flt.query}
        tfs, lengths = counted([Candidate(*row[2:]) for row in rows], stems.values())
        matches = {t: sum(1 for found in tfs if found[s]) for t, s in stems.items()}
        weights = term_weights(flt.query, max(size, len(rows)), matches)
        return (yield from self._page(flt, rows, scores(tfs, lengths, weights)))

    def _best(
        self,
        flt: MemoryFilter,
        query: str,
        everything: Stmt,
        where: str,
        params: list[Any],
        share: float = 1.0,
        span: tuple[str, list[Any]] = ("", []),
    ) -> Op[Result]:
        """``bm25()``'s page: the best matches ranked by the index alone (a look-up in
        ``memories`` per match costs more than ranking it), then those of them that pass
        the filter, of which ``share`` of the matches are expected to be the scope's. More
        are read when the filter narrows further (a window, tags, metadata, types, ...),
        and looked up best first, a stretch at a time, until the page is known: each
        stretch sized by how many of those before it passed. ``everything`` ranks with the
        filter inside when too few pass, or when the last match read ties the page's last.
        ``span`` bounds the rowids read (a window's, see ``ranked``)."""
        want = flt.offset + flt.limit
        narrowed = any(
            (flt.session_id, flt.tags, flt.metadata, flt.memory_types, flt.event_types)
        ) or any(
            v is not None
            for v in (flt.min_importance, flt.key, flt.content_contains, flt.since_ns, flt.until_ns)
        )
        first = int((2 * want + 16) / max(share, 0.01))
        read = int((8 * want + 200) / max(share, 0.01)) if narrowed else first
        top = yield Stmt(
            f"SELECT rowid, {BM25} AS rank FROM memory_terms WHERE memory_terms MATCH ?"
            f"{span[0]} ORDER BY rank LIMIT ?",
            (query, *span[1], read),
        )
        rank = dict(top.rows)
        rows: list[Row] = []
        looked, stretch = 0, first
        while looked < len(top.rows):
            found = yield Stmt(
                "SELECT m.rid, m.time FROM json_each(?) pool"
                f" CROSS JOIN memories m ON m.rid = pool.value WHERE {where}",
                [
                    orjson.dumps([r for r, _ in top.rows[looked : looked + stretch]]).decode(),
                    *params,
                ],
            )
            looked += stretch
            rows = sorted([*rows, *found.rows], key=lambda r: (rank[r[0]], -r[1]))
            # Known once the page's last ranks strictly better than the last match looked up:
            # every match not looked up ranks at least as low as that one.
            last = top.rows[min(looked, len(top.rows)) - 1][1]
            if len(rows) >= want and (not want or rank[rows[want - 1][0]] < last):
                break
            stretch = max(16, (want - len(rows) + 8) * looked // max(len(rows), 1))
        if len(top.rows) == read and (
            len(rows) < want or (want and rank[rows[want - 1][0]] >= top.rows[-1][1])
        ):
            return (yield everything)
        return (yield from self._page(flt, rows, [-rank[row[0]] for row in rows]))

    def _candidates(self, rids: Iterable[int], where: str, params: list[Any]) -> Op[list[Row]]:
        """``(rid, time, content, labels, context)`` of the memories of ``rids`` that pass
        the filter: the text the index was given, read from ``memory_text``."""
        found = yield Stmt(
            "SELECT m.rid, m.time, c.content, c.labels, c.context FROM json_each(?) pool"
            " CROSS JOIN memories m ON m.rid = pool.value"
            f" CROSS JOIN memory_text c ON c.rid = m.rid WHERE {where}",
            [orjson.dumps(sorted(rids)).decode(), *params],
        )
        return list(found.rows)

    def _scope_size(self, org_id: str, agent_id: str | None) -> Op[int]:
        """How many current memories the agent (or, without one, the org) holds: its
        all-time tally (the org's own row, ``ORG_TALLY``: an org's agents need not be
        registered)."""
        found = yield Stmt(
            f"SELECT coalesce(sum(memories), 0) FROM {self.tallies_by_hour}"
            " WHERE org_id = ? AND agent_id = ? AND hour = ?",
            (org_id, ORG_TALLY[0] if agent_id is None else agent_id, ALL_TIME),
        )
        return int(found.rows[0][0])

    def add_tallies(self, changes: Sequence[Tally]) -> Stmt:
        """The agents' changes, and each org's to its own all-time row (``ORG_TALLY``), which
        ``_scope_size`` reads: one statement."""
        orgs: dict[str, list[int]] = {}
        for org_id, _, _, hour, memories, errors in changes:
            if hour == ALL_TIME:
                total = orgs.setdefault(org_id, [0, 0])
                total[0] += memories
                total[1] += errors
        own = [(org, *ORG_TALLY, ALL_TIME, n, e) for org, (n, e) in sorted(orgs.items()) if n or e]
        return super().add_tallies([*changes, *own])

    def _page(self, flt: MemoryFilter, rows: Sequence[Row], scored: Sequence[float]) -> Op[Result]:
        """The filter's page of ``_candidates`` rows, best score first (then newest): their
        memories, each with its score negated like ``bm25()``'s."""
        ranked = sorted(zip(scored, rows, strict=True), key=lambda p: (-p[0], -p[1][1]))
        page = ranked[flt.offset : flt.offset + flt.limit]
        found = yield Stmt(
            f"SELECT m.rid, {MEMORY_COLUMNS} FROM json_each(?) pool"
            " CROSS JOIN memories m ON m.rid = pool.value",
            [orjson.dumps([row[0] for _, row in page]).decode()],
        )
        memories = {row[0]: row[1:] for row in found.rows}
        return Result([(*memories[row[0]], -score) for score, row in page], len(page))

    def write_memories(self, memories: Sequence[NewMemory]) -> Op[None]:
        """A statement per table; the writer is the only one, so the next rids are known."""
        base = (yield Stmt("SELECT coalesce(max(rid), 0) FROM memories")).rows[0][0]
        rows: list[tuple[Any, ...]] = []
        tag_rows: list[tuple[Any, ...]] = []
        text_rows: list[tuple[Any, ...]] = []
        term_rows: list[tuple[Any, ...]] = []
        trigram_rows: list[tuple[Any, ...]] = []
        meta_rows: list[tuple[Any, ...]] = []
        for rid, (org_id, m, context) in enumerate(memories, start=base + 1):
            rows.append((rid, *memory_values(org_id, m, self.tag_value(m.tags))))
            tag_rows.extend((org_id, tag, m.time_ns, rid) for tag in m.tags)
            meta_rows.extend(_meta_rows(m, org_id, rid))
            text = (m.content, " ".join((*m.tags, m.event_type)), context)
            text_rows.append((rid, *text))
            term_rows.append(_text_row(org_id, m.agent_id, rid, text))
            trigram_rows.append((rid, m.content, _substring_scopes(org_id, m.agent_id, m.time_ns)))
        yield Stmt(
            f"INSERT INTO memories (rid, {MEMORY_INSERT_COLUMNS}) VALUES ({marks(MEMORY_FIELDS + 1)})",
            rows,
            True,
        )
        sql = "INSERT OR IGNORE INTO memory_tags (org_id, tag, time, rid) VALUES (?, ?, ?, ?)"
        yield Stmt(sql, tag_rows, True)
        sql = (
            "INSERT INTO memory_meta (org_id, field, vtype, value, time, rid)"
            " VALUES (?, ?, ?, ?, ?, ?)"
        )
        yield Stmt(sql, meta_rows, True)
        sql = "INSERT INTO memory_text (rid, content, labels, context) VALUES (?, ?, ?, ?)"
        yield Stmt(sql, text_rows, True)
        sql = "INSERT INTO memory_terms (rowid, scope, content, labels, context) VALUES (?, ?, ?, ?, ?)"
        yield Stmt(sql, term_rows, True)
        sql = "INSERT INTO memories_trigram (rowid, content, scope) VALUES (?, ?, ?)"
        yield Stmt(sql, trigram_rows, True)
        # This runs on the writer (a write undone later counts too: merging is only work).
        self._written += len(memories)
        if self._written >= max(MERGE_WRITTEN, (base + len(memories)) // 10):
            self._merge_later()

    def erase_where(self, condition: str, params: Sequence[Any]) -> Op[int]:
        """Collect the rids first (the condition may read ``memory_tags``), then erase them
        from the table, the tags and the full-text indexes (the contentless ones are told
        the text they were given)."""
        found = yield Stmt(
            "SELECT m.rid, m.org_id, m.agent_id, t.content, t.labels, t.context, m.content,"
            f" m.time FROM memories m LEFT JOIN memory_text t ON t.rid = m.rid WHERE {condition}",
            params,
        )
        rids = [(row[0],) for row in found.rows]
        sql = (
            "INSERT INTO memories_trigram (memories_trigram, rowid, content, scope)"
            " VALUES ('delete', ?, ?, ?)"
        )
        yield Stmt(
            sql, [(r[0], r[6], _substring_scopes(r[1], r[2], r[7])) for r in found.rows], True
        )
        indexed = [row for row in found.rows if row[3] is not None]  # all, unless damaged
        sql = (
            "INSERT INTO memory_terms (memory_terms, rowid, scope, content, labels, context)"
            " VALUES ('delete', ?, ?, ?, ?, ?)"
        )
        yield Stmt(sql, [_text_row(r[1], r[2], r[0], r[3:6]) for r in indexed], True)
        for table, column in (
            ("memory_tags", "rid"),
            ("memory_meta", "rid"),
            ("memory_text", "rid"),
            ("memories", "rid"),
        ):
            yield Stmt(f"DELETE FROM {table} WHERE {column} = ?", rids, True)
        if len(rids) >= MERGE_ERASED:
            self._merge_later()  # this runs on the writer, which merges once it is idle
        return len(rids)
