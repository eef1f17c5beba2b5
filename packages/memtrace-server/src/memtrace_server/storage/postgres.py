"""PostgreSQL store (psycopg 3, async pool): many server processes may share one database.

Nothing here assumes a single process: writers of one dedup key, agent name or imported
id take a transaction-scoped advisory lock, migrations and partition creation take a
global one, and there is no cache to invalidate. What is PostgreSQL's own: the pool,
monthly partitions of ``memories``, tags as an array, and the tsvector full-text index.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg import AsyncPipeline as Pipeline
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from memtrace_server.core.records import MemoryBatch, MemoryFilter
from memtrace_server.storage import base, sql
from memtrace_server.storage.sql import Op, SqlStore, Stmt

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]
log = logging.getLogger("memtrace.storage")

PARTITION_LOCK = 4
RANKED_POOL = 2000  # newest matches ranked, per query form
TERM_POOL = 250  # and of each term that the pool of any term holds fewer of
TERM_POOLS = 4  # (at most this many terms: the rarest)
COMMON_SHARE = 10  # a term in a tenth of a full pool of any term is common (``ranked``)
TERM_WALK_MATCHES = 4 * TERM_POOL  # (walked when its history holds more: ``_term_pool``)
DAY_NS = 86_400 * 10**9
# A busy agent's substring or tag pages walk its newest days, a day at a time, before its
# whole history. Busy for them (50 fill within weeks of a long history): at least
WALK_MEMORIES = 10_000  # memories in its newest
WALK_DAYS = 60  # days, which the walk covers.
# A ranked query's pool of any term walks an agent's history back from its newest memory,
SPAN_NS = 30 * DAY_NS  # this long at a time (the word index is keyed by org and span),
RANK_WALK_MEMORIES = 50_000  # when the agent holds at least this many memories,
RANK_SAMPLE = 300  # and the query's words are in fewer of its newest this many than
RANK_WALK_SHARE = 0.25  # this share (a common word fills the pool in time order) but
RANK_WALK_MATCHES = 2 * RANKED_POOL  # in more than this many of all its memories, by that share,
RANK_WALK_SPANS = 120  # over fewer than this many spans (one memory far from the rest: no walk).
VERDICT_NS = 60 * 10**9  # an agent found busy or not is not checked again for this long
VERDICT_AGENTS = 10_000  # (of at most this many agents remembered)
ANALYZE_EVERY = 1_000  # memories a process inserts between looks for unanalyzed partitions,
ANALYZE_BYTES = 1 << 16  # which are analyzed once they hold this much with no statistics
PARTITION_NAME = re.compile(r"memories_(p\d{6}|default)")
# Concurrent inserts share transactions: at most this many run at once, and calls arriving
# meanwhile wait for the next one (at 32 concurrent single creates, 2 did best: 2.8x the
# requests per second of a transaction each, a third of the CPU per request).
INSERT_TRANSACTIONS = 2
MONTHS_BEHIND, MONTHS_AHEAD = 1, 3
ASCII_WORD = re.compile("[0-9A-Za-z]+")
# A substring page counts its matches among its scope's newest QUICK_ROWS memories first:
# one in at least DENSE_HITS of them is read in time order, twice as far as their rate
# says its page needs and at most DENSE_ROWS memories (``PostgresStore._newest_page``).
QUICK_ROWS = 64
DENSE_HITS = 3
DENSE_ROWS = 8192


def _unnested(columns: Sequence[str], types: dict[str, str], values: dict[str, str]) -> str:
    """``SELECT`` of rows sent as one array a column (of the column's type in ``types``,
    else text), in the order sent: one statement for many rows, where an ``executemany`` of
    a row each had PostgreSQL set the statement up again for every row. A column's value is
    its array's element ``u.<column>``, or the expression ``values`` gives for it."""
    arrays = [f"?::{types.get(c, 'text')}[]" for c in columns]
    return (
        f"SELECT {', '.join(values.get(c, f'u.{c}') for c in columns)}"
        f" FROM unnest({', '.join(arrays)})"
        f" WITH ORDINALITY AS u({', '.join(columns)}, n) ORDER BY u.n"
    )


def _arrays(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows as the column arrays of ``_unnested``."""
    return [list(column) for column in zip(*rows, strict=True)]


# The memories' columns (``MEMORY_INSERT_COLUMNS``, then the context); tags travel as JSON
# text, an array of arrays being rectangular.
_MEMORY_COLUMNS = [c.strip() for c in sql.MEMORY_INSERT_COLUMNS.split(",")] + ["context"]
_INSERT_MEMORIES = f"INSERT INTO memories ({', '.join(_MEMORY_COLUMNS)}) " + _unnested(
    _MEMORY_COLUMNS,
    {"importance": "float8", "time": "int8", "expires_at": "int8", "superseded_at": "int8"},
    {
        "tags": "ARRAY(SELECT t FROM jsonb_array_elements_text(u.tags::jsonb)"
        " WITH ORDINALITY e(t, i) ORDER BY i)"
    },
)
_TALLY_COLUMNS = ["org_id", "agent_id", "memory_type", "hour", "memories", "errors"]
_ADD_TALLIES = (
    f"{sql.TALLY_INSERT} "
    + _unnested(_TALLY_COLUMNS, {"hour": "int8", "memories": "int8", "errors": "int8"}, {})
    + sql.TALLY_ADDED
)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """The one place PostgreSQL's errors become the store's."""
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        raise base.DuplicateName(str(exc).splitlines()[0]) from exc
    except psycopg.errors.ForeignKeyViolation as exc:
        raise base.MissingReference(str(exc).splitlines()[0]) from exc
    except psycopg.errors.DiskFull as exc:
        raise base.StoreFull(f"write failed: {exc}") from exc
    except psycopg.DataError as exc:
        raise base.InvalidValue(str(exc).splitlines()[0]) from exc
    except (PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise base.StoreError(f"PostgreSQL unavailable: {exc}") from exc


def _keyed(needle: str) -> bool:
    """Whether pg_trgm finds a trigram in ``LIKE '%needle%'``, so that its index narrows
    the read. It makes trigrams of the pattern's words (letters and digits) padded where
    another character bounds them, by two spaces before and one after, and none where the
    pattern's wildcards do: ``ab`` has none, ``a-b`` has ``"  b"``. Decided on ASCII alone
    (whether another character is a letter depends on the database's locale): a run of
    ASCII letters and digits is padded only beside ASCII punctuation or space, so that a
    word pg_trgm reads longer, or padded where this is not, has a trigram too."""
    for word in ASCII_WORD.finditer(needle):
        start, end = word.span()
        before = start > 0 and needle[start - 1].isascii()
        after = end < len(needle) and needle[end].isascii()
        if end - start + 2 * before + after >= 3:
            return True
    return False


async def _configure(conn: Conn) -> None:
    """A new connection's settings. No JIT compilation: the store's statements are short,
    and a plan costed above ``jit_above_cost`` (a ranked query of many words, a pool per
    word) was compiled each time it ran: a 12-word query of the 1M bench's busy agent took
    850 ms, 190 ms without. One plan kept for each statement (``_send``): left to choose,
    PostgreSQL planned an agent's recall anew on every run at 1M (0.5-0.8 ms against 0.2),
    its plan for any window costed above its plans for each."""
    await conn.execute("SET jit = off")
    await conn.execute("SET plan_cache_mode = force_generic_plan")


@functools.lru_cache(maxsize=1024)
def _dialect(text: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return text.replace("%", "%%").replace("?", "%s")


async def _execute(conn: Conn, stmt: Stmt, pipeline: Pipeline | None = None) -> sql.Result:
    """Run one statement. In ``pipeline`` mode an executemany is only queued (nothing reads
    its result; a failure surfaces at the next sync, at the latest the commit); any other
    statement is synced, since the op reads its rows. Statements ``sql.together`` go out
    at once and are synced once: in the op's pipeline, or else in one of their own (whose
    end is the sync: entering one nested, or syncing before its end, costs a round trip)."""
    if stmt.together:
        if pipeline is not None:
            cursors = [await _send(conn, part) for part in stmt.together]
            await pipeline.sync()
        else:
            async with conn.pipeline():
                cursors = [await _send(conn, part) for part in stmt.together]
        return sql.Result([], 0, tuple([await _fetched(cursor) for cursor in cursors]))
    cursor = await _send(conn, stmt)
    if stmt.many:
        return sql.Result([], cursor.rowcount)
    if pipeline is not None:
        await pipeline.sync()
    return await _fetched(cursor)


async def _send(conn: Conn, stmt: Stmt) -> psycopg.AsyncCursor[Any]:
    """Execute one statement (only queued, in pipeline mode). One to ``replan`` goes with its
    values written into it, so that it is planned for them: the connection keeps one plan
    for any values of every other (``_configure``), and for a text search that plan was
    7-16x slower than its own plans."""
    cursor = psycopg.AsyncClientCursor(conn) if stmt.replan else conn.cursor()
    if stmt.many:
        await cursor.executemany(_dialect(stmt.sql), stmt.params)
    else:
        await cursor.execute(_dialect(stmt.sql), stmt.params)
    return cursor


async def _fetched(cursor: psycopg.AsyncCursor[Any]) -> sql.Result:
    """A statement's result, once its answer has come."""
    return sql.Result(await cursor.fetchall() if cursor.description else [], cursor.rowcount)


async def _drive(conn: Conn, op: Op[T], pipeline: Pipeline | None = None) -> tuple[T, bool]:
    """Run an op's statements on ``conn``: its value, and whether to undo its writes."""
    steps = sql.Steps(op)
    while (stmt := steps.next()) is not None:
        try:
            with _translated():
                steps.result = await _execute(conn, stmt, pipeline)
        except sql.CONFLICTS as exc:
            steps.error = exc
    return steps.value, steps.handled


def _settle(
    future: asyncio.Future[list[bool]],
    value: list[bool] | None = None,
    error: BaseException | None = None,
) -> None:
    """Answer a waiting caller (unless it gave up)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert value is not None
        future.set_result(value)


def _month_start(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000_000


def _shift(year: int, month: int, by: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + by
    return index // 12, index % 12 + 1


@dataclass(frozen=True)
class RankedWalk:
    """What a large agent's ranked query walks of its history a span at a time, newest
    first (``PostgresStore._walked_spans``): the spans (its newest and its oldest), whether
    the pool of any term is walked (``newest``, the statement's name for it), and the terms
    whose own pools are."""

    high: int
    low: int
    newest: bool
    terms: frozenset[str]


class PostgresStore(SqlStore):
    """The server store: one PostgreSQL database, shared by any number of processes."""

    backend = "postgres"

    def contains(self, needle: str) -> tuple[str, Any]:
        """``LIKE`` (case-sensitive) for a substring the trigram index keys (``_keyed``), its
        wildcards escaped; ``strpos()`` for any other, which no plan can take to that index.
        A LIKE pattern without a trigram reads every entry of the index: a prepared
        statement's plan, made once for any pattern, did so for two-letter substrings, 1.9 s
        a page on the bench's 1M store."""
        if not _keyed(needle):
            return "strpos(m.content, ?) > 0", needle
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return "m.content LIKE ?", f"%{escaped}%"

    for_update = " FOR UPDATE"
    probe_id_time = True

    def __init__(
        self, url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 5.0
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._min_size, self._max_size = min_size, max_size
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._pending: collections.deque[tuple[MemoryBatch, asyncio.Future[list[bool]]]] = (
            collections.deque()
        )
        self._flushers: set[asyncio.Task[None]] = set()
        # (org, agent, days or None) -> (until when, in monotonic ns; whether busy):
        # ``_busy_day`` and ``_walked_spans``
        self._verdicts: dict[tuple[str, str, int | None], tuple[int, bool]] = {}
        self._written = 0  # memories inserted since the last look for unanalyzed partitions
        self._analyzer: asyncio.Task[None] | None = None

    # lifecycle

    async def open(self) -> None:
        """Connect, apply migrations, create partitions ahead and start their upkeep."""
        self._pool = AsyncConnectionPool(
            self.url,
            min_size=self._min_size,
            max_size=self._max_size,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(self.timeout))},
            configure=_configure,
            open=False,
            timeout=self.timeout,
        )
        try:
            await self._pool.open(wait=True, timeout=self.timeout)
        except (PoolTimeout, psycopg.Error) as exc:
            await self._pool.close()
            self._pool = None
            raise base.StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        await self._write(self._migrate(int(time.time())))
        await self._write(self._partitions())
        self._maintenance = asyncio.get_running_loop().create_task(self._keep_partitions())

    async def close(self) -> None:
        """Finish coalesced inserts, stop the upkeep task and close the pool."""
        while self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)
        if self._analyzer is not None:
            await asyncio.gather(self._analyzer, return_exceptions=True)
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _keep_partitions(self) -> None:
        while True:
            await asyncio.sleep(6 * 3600)
            try:
                await self._write(self._partitions())
            except base.StoreError as exc:
                log.warning("partition upkeep failed: %s", exc)

    def _partitions(self) -> Op[None]:
        """Monthly partitions from a month back to three months ahead of now."""
        today = datetime.now(timezone.utc)
        yield from self.lock("partitions", PARTITION_LOCK)
        for offset in range(-MONTHS_BEHIND, MONTHS_AHEAD + 1):
            year, month = _shift(today.year, today.month, offset)
            end_year, end_month = _shift(year, month, 1)
            yield Stmt(
                f"CREATE TABLE IF NOT EXISTS memories_p{year:04d}{month:02d} PARTITION OF memories"
                f" FOR VALUES FROM ({_month_start(year, month)}) TO ({_month_start(end_year, end_month)})"
            )

    # running ops

    async def _read(self, op: Op[T], *, brief: bool = False) -> T:
        if self._pool is None:
            raise base.StoreError("store is not open")
        with _translated():
            async with self._pool.connection(timeout=self.timeout) as conn:
                return (await _drive(conn, op))[0]

    async def _write(self, op: Op[T], pipelined: bool = False) -> T:
        """Run ``op`` in a transaction. ``pipelined``: BEGIN, the executemany statements and
        COMMIT go out with the statements around them instead of a round trip each, for an
        op whose executemany statements may fail only fatally (not ``sql.guarded``)."""
        if self._pool is None:
            raise base.StoreError("store is not open")
        with _translated():
            async with self._pool.connection(timeout=self.timeout) as conn:
                async with contextlib.AsyncExitStack() as stack:
                    pipeline = (
                        await stack.enter_async_context(conn.pipeline()) if pipelined else None
                    )
                    async with conn.transaction():
                        value, undo = await _drive(conn, op, pipeline)
                        if undo:
                            raise psycopg.Rollback()
                return value

    async def _insert_batch(self, batch: MemoryBatch) -> list[bool]:
        """Coalesced: calls that arrive while ``INSERT_TRANSACTIONS`` transactions of inserts
        are under way wait, and the next one takes them all (up to ``MAX_COALESCED``)."""
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._pending.append((batch, future))
        if len(self._flushers) < INSERT_TRANSACTIONS:
            task = asyncio.get_running_loop().create_task(self._flush())
            self._flushers.add(task)
        return await future

    async def _flush(self) -> None:
        """Run the pending calls, up to ``MAX_COALESCED`` memories a transaction, until none
        is left (a call whose caller gave up is skipped)."""
        task = asyncio.current_task()
        try:
            while self._pending:
                chunk: list[tuple[MemoryBatch, asyncio.Future[list[bool]]]] = []
                size = 0
                while self._pending and (
                    not chunk or size + len(self._pending[0][0].memories) <= sql.MAX_COALESCED
                ):
                    batch, future = self._pending.popleft()
                    if not future.cancelled():
                        chunk.append((batch, future))
                        size += len(batch.memories)
                if chunk:
                    await self._run_chunk(chunk)
        finally:
            # Uncounted in the step that found the queue empty, so a call queued after it
            # starts a flusher. (Uncounted by a done callback, a step later, a call queued
            # in between waited for the next call to come.)
            if task is not None:
                self._flushers.discard(task)

    async def _run_chunk(self, chunk: list[tuple[MemoryBatch, asyncio.Future[list[bool]]]]) -> None:
        """One transaction for the chunk; if it fails on one call's account, each call in a
        transaction of its own, so only that one fails. A store failure fails them all."""
        try:
            values = await self._write(self._insert_batches([b for b, _ in chunk]), pipelined=True)
        except base.StoreError as exc:
            for _, future in chunk:
                _settle(future, error=exc)
            return
        except Exception as exc:
            if len(chunk) == 1:
                _settle(chunk[0][1], error=exc)
                return
            for batch, future in chunk:
                try:
                    (value,) = await self._write(self._insert_batches([batch]))
                except Exception as alone:
                    _settle(future, error=alone)
                else:
                    _settle(future, value)
            return
        for (_, future), value in zip(chunk, values, strict=True):
            _settle(future, value)
        self._written += sum(len(batch.memories) for batch, _ in chunk)
        if self._written >= ANALYZE_EVERY and (self._analyzer is None or self._analyzer.done()):
            self._written = 0
            self._analyzer = asyncio.get_running_loop().create_task(self._analyze_new())

    async def _analyze_new(self) -> None:
        """``ANALYZE`` the partitions that writes filled before any statistics were taken of
        them (``ANALYZE_BYTES``): until autovacuum gets to one (up to a minute after a bulk
        load or a month's first writes), PostgreSQL plans their lookups blind. Blind, it
        guesses one row for the org's time index and for the dedup index alike, and took
        the time index for a write's dedup probes: 50 ms for 512 keys in a partition of
        765 memories, 0.1 ms once analyzed (see ``dedup_lookup``)."""
        try:
            found = await self._read(
                sql.run(
                    Stmt(
                        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                        " WHERE i.inhparent = 'memories'::regclass AND pg_relation_size(c.oid) >= ?"
                        " AND NOT EXISTS (SELECT 1 FROM pg_stats s WHERE s.tablename = c.relname)",
                        (ANALYZE_BYTES,),
                    )
                )
            )
            for (name,) in found.rows:
                if PARTITION_NAME.fullmatch(name):
                    await self._write(sql.run(Stmt(f"ANALYZE {name}")))
        except base.StoreError as exc:
            log.warning("analyzing new partitions failed: %s", exc)

    # dialect hooks

    def lock_statements(self, keys: Sequence[str], space: int) -> list[Stmt]:
        """Transaction-scoped advisory locks on (space, key) for every key, in the order
        given, in one statement (``unnest`` yields the array in order)."""
        if not keys:
            return []
        return [
            Stmt(
                "SELECT count(pg_advisory_xact_lock(hashtextextended(k, ?))) FROM unnest(?::text[]) AS k",
                (space, list(keys)),
            )
        ]

    def tag_value(self, tags: tuple[str, ...]) -> Any:
        """Tags as JSON text, which ``_INSERT_MEMORIES`` makes a text array of (a memory's
        tags travel in a column array, and an array of arrays must be rectangular)."""
        return orjson.dumps(tags).decode()

    def tags_of(self, value: Any) -> tuple[str, ...]:
        """Tags from a text array."""
        return tuple(value or ())

    def tags_clause(self, org_id: str, flt: MemoryFilter) -> tuple[list[str], list[Any]]:
        """Array containment (GIN index)."""
        return ["m.tags @> ?"], [list(flt.tags)]

    def metadata_clause(
        self, org_id: str, fields: Sequence[tuple[str, Any]]
    ) -> tuple[list[str], list[Any]]:
        """jsonb containment of the fields (GIN expression index)."""
        return ["m.metadata_json::jsonb @> ?::jsonb"], [orjson.dumps(dict(fields)).decode()]

    def dedup_lookup(self, org_id: str, keys: Sequence[str], window: Sequence[int]) -> Stmt:
        """One probe of the dedup index per key. As one list (``dedup_key IN (...)``), a
        partition that no ``ANALYZE`` had seen yet (just filled by a bulk import) was read
        through the org's time index instead: 53-87 ms a lookup for 4 to 512 keys in an
        80,000-memory partition, against 0.05-4 ms. ``OFFSET 0`` keeps the planner from
        flattening the probes back into one scan. Planned for each call: a plan cached while
        a partition was small kept its choice as the partition grew (70-180 ms a lookup).
        A small partition without statistics still gets the wrong index (its estimates tie),
        which is why the store analyzes new partitions itself (``_analyze_new``)."""
        return Stmt(
            "SELECT k.key, m.time, m.expires_at FROM unnest(?::text[]) AS k(key)"
            " CROSS JOIN LATERAL (SELECT time, expires_at FROM memories WHERE org_id = ?"
            " AND dedup_key = k.key AND time > ? AND time < ?"
            " AND (expires_at IS NULL OR expires_at > ?) OFFSET 0) m",
            (list(keys), org_id, *window),
            replan=True,
        )

    @staticmethod
    def _walked_agent(flt: MemoryFilter) -> str | None:
        """The agent whose read may walk back in time: one agent's, newest first, of no one
        key or session (those are narrow already); None for any other read."""
        if flt.ascending or flt.key is not None or flt.session_id is not None:
            return None
        return flt.agent_id

    def _remember(self, key: tuple[str, str, int | None], busy: bool) -> bool:
        """Keep a verdict on an agent for ``VERDICT_NS`` (at most ``VERDICT_AGENTS`` of them);
        the verdict."""
        if len(self._verdicts) >= VERDICT_AGENTS:
            self._verdicts.clear()
        self._verdicts[key] = (time.monotonic_ns() + VERDICT_NS, busy)
        return busy

    def _busy_day(self, org_id: str, flt: MemoryFilter, days: int, memories: int) -> Op[int | None]:
        """The newest day a busy agent's read walks back from; None for other reads. Only
        for an agent with at least ``memories`` memories in its last ``days`` days (its
        tallies say): for a quieter scope the day-by-day probes cost more than its matches.
        The verdict is kept for ``VERDICT_NS``: summing 60 days of hourly tallies took 0.7 ms
        a read of the 1M bench's busy agent, its newest time alone 0.1 ms."""
        agent = self._walked_agent(flt)
        if agent is None:
            return None
        key = (org_id, agent, days)  # each test has days of its own
        until, busy = self._verdicts.get(key, (0, False))
        newest_sql = "SELECT max(x.time) FROM memories x WHERE x.org_id = ? AND x.agent_id = ?"
        if until > time.monotonic_ns():
            if not busy:
                return None
            newest = (yield Stmt(newest_sql, [org_id, agent])).rows[0][0]
        else:
            now = flt.visible_at_ns if flt.visible_at_ns is not None else time.time_ns()
            newest, recent = (
                yield Stmt(
                    f"SELECT ({newest_sql}), (SELECT sum(t.memories) FROM agent_tallies t"
                    " WHERE t.org_id = ? AND t.agent_id = ? AND t.hour >= ?)",
                    [org_id, agent] * 2 + [sql.hour_of(now - days * DAY_NS)],
                )
            ).rows[0]
            busy = self._remember(key, (recent or 0) >= memories)
        if newest is None or not busy:
            return None
        if flt.until_ns is not None:
            newest = min(newest, flt.until_ns - 1)
        return sql.bucket_of(newest, DAY_NS)

    @staticmethod
    def _walked_days(flt: MemoryFilter, high: int, days: int) -> tuple[int, int, bool]:
        """(newest day, oldest day, whether those days hold the filter's whole window) of a
        walk of ``days`` days back from ``high``."""
        low = high - days + 1
        whole = flt.since_ns is not None and sql.bucket_of(flt.since_ns + 1, DAY_NS) >= low
        if flt.since_ns is not None:
            low = max(low, sql.bucket_of(flt.since_ns + 1, DAY_NS))
        return high, low, whole

    @staticmethod
    def _walk(
        columns: str,
        where: str,
        params: list[Any],
        walk: tuple[int, int],
        most: int,
        unit: int,
        below: tuple[str, list[Any]] | None = None,
    ) -> tuple[str, list[Any]]:
        """The newest ``most`` memories passing ``where`` from bucket ``walk[0]`` back to
        ``walk[1]`` of ``unit`` (a day or a span), one at a time (the indexes are keyed by
        org and day or span, exact keys being cheap where a range of them reads every org's
        entries): the statement stops at the bucket that fills them. ``below``: a statement
        of one time (and its arguments) the walk starts at instead when older than
        ``walk[0]``'s bucket; none at all when it gives no row or NULL."""
        high, low = walk
        first, before = "?::bigint", [high]
        if below is not None:
            first = (
                f"(SELECT CASE WHEN b IS NOT NULL THEN LEAST(?::bigint, b / {unit}) END"
                f" FROM ({below[0]}) s(b))"
            )
            before = [high, *below[1]]
        return (
            f"SELECT y.* FROM generate_series({first}, ?::bigint, -1) d, LATERAL"
            f" (SELECT {columns} FROM memories m WHERE {where} AND (m.time / {unit}) = d"
            # the buckets' bounds as times too: only their partitions are planned and probed
            " AND m.time >= ? AND m.time < ? ORDER BY m.time DESC, m.rid DESC LIMIT ?) y LIMIT ?",
            [
                *before,
                low,
                *params,
                sql.bucket_start(low, unit),
                sql.bucket_start(high + 1, unit),
                most,
                most,
            ],
        )

    def recent_page(self, org_id: str, flt: MemoryFilter) -> Op[list[tuple[Any, ...]] | None]:
        """A substring or tag read of a busy agent, newest first, walks the agent's newest
        ``WALK_DAYS`` days one day at a time (the substring and tag indexes are keyed by org
        and day) and stops at its page: a read of the whole history fetches every match to
        sort them, and a busy agent's substring may match thousands. Busy is at least
        ``WALK_MEMORIES`` in those days, so a long history is walked as well as a dense one:
        on a store grown in time to 1M, the busy agent holds about 26,000 memories in its
        newest 60 days and 400,000 in all, and a walk answered its substring pages in 6-8 ms
        against 13 ms for the whole history (9 ms against 13-14 at 100k). None when the
        walk does not apply, or the page is not full within those days and the filter's
        window reaches further back: then the history is read."""
        if flt.query or not (flt.content_contains or flt.tags):
            return None
        high = yield from self._busy_day(org_id, flt, WALK_DAYS, WALK_MEMORIES)
        if high is None:
            return (yield from self._newest_page(org_id, flt))
        walk = self._walked_days(flt, high, WALK_DAYS)
        where, params = self.memory_filter(org_id, flt)
        text, args = self._walk(
            sql.MEMORY_COLUMNS, where, params, walk[:2], flt.offset + flt.limit, DAY_NS
        )
        found = yield Stmt(text, args, replan=True)
        page = found.rows[flt.offset :]
        return page if walk[2] or len(page) == flt.limit else None

    def _newest_page(self, org_id: str, flt: MemoryFilter) -> Op[list[tuple[Any, ...]] | None]:
        """A substring page of an org, agent or session (newest first, within its window if
        any, nothing else narrowing it) from the scope's newest memories, or None to read
        it through the trigram index. A substring in at least ``DENSE_HITS`` of the newest
        ``QUICK_ROWS`` is read in time order, twice as far as their rate says the page
        needs, at most ``DENSE_ROWS`` memories; a scope of fewer than ``QUICK_ROWS`` is
        read whole. The plan PostgreSQL keeps for a substring statement, made once for any
        pattern, fetches every match of the scope's history to sort them: on the bench's
        1M store, 7.5-9 ms for a word in 3 % of an org's memories, against 2.3-2.8 ms read
        in time order (the count costs a rarer word about 0.3 ms)."""
        if (
            flt.content_contains is None
            or flt.ascending
            or flt.tags
            or flt.metadata
            or flt.memory_types
            or flt.event_types
            or flt.min_importance is not None
            or flt.key is not None
        ):
            return None
        want = flt.offset + flt.limit
        rest, params = self.memory_filter(org_id, replace(flt, content_contains=None))
        contains, needle = self.contains(flt.content_contains)
        newest_first = "ORDER BY m.time DESC, m.rid DESC"
        # The bounds are written out, so that the one plan the connection keeps for each
        # statement is made for them (a power of two: a few statements, each kept).
        scope = f"FROM memories m WHERE {rest} {newest_first}"
        hits, seen = (
            yield Stmt(
                f"SELECT count(*) FILTER (WHERE {contains}), count(*) FROM"
                f" (SELECT m.content {scope} LIMIT {QUICK_ROWS}) m",
                [needle, *params],
            )
        ).rows[0]
        if hits < DENSE_HITS and seen == QUICK_ROWS:
            return None
        needed = 2 * want * QUICK_ROWS // max(hits, 1)
        rows = min(DENSE_ROWS, max(QUICK_ROWS, 1 << (needed - 1).bit_length()))
        dense = yield Stmt(
            f"SELECT {sql.MEMORY_COLUMNS} FROM (SELECT {sql.MEMORY_COLUMNS}, m.rid {scope}"
            f" LIMIT {rows}) m WHERE {contains} {newest_first} LIMIT {want}",
            [*params, needle],
        )
        # Fewer than its rate promised (a larger scope): read through the index instead.
        if len(dense.rows) < want and seen == QUICK_ROWS:
            return None
        return dense.rows[flt.offset :]

    def _walked_spans(
        self, org_id: str, flt: MemoryFilter, terms: Sequence[str]
    ) -> Op[RankedWalk | None]:
        """What a ranked query of a large agent walks of its history, newest first, a span
        at a time (``RankedWalk``), or None to read its pools from the whole history. Large:
        at least ``RANK_WALK_MEMORIES`` memories (its all-time tally; a smaller agent is
        known small for ``VERDICT_NS``) over fewer than ``RANK_WALK_SPANS`` spans (an empty
        span costs a probe too). The GIN index gives no time order: read whole, a pool
        reads and sorts every match of the history (8,700 for a rare word of the 1M bench's
        busy agent, 30 ms), where the walk reads a span's at a time and stops at the span
        that fills the pool.

        The pool of any term is walked when the query's words are in fewer than
        ``RANK_WALK_SHARE`` of the agent's newest ``RANK_SAMPLE`` memories, but by that
        share in more than ``RANK_WALK_MATCHES`` of all of them (a common word is left to
        the whole read, which PostgreSQL then answers from the agent's memories in time
        order); a term's own pool when its share there says more than ``TERM_WALK_MATCHES``
        (a rarer term's walk would probe every span for a few matches)."""
        agent = self._walked_agent(flt)
        if agent is None:
            return None
        key = (org_id, agent, None)
        until, big = self._verdicts.get(key, (0, True))
        if until > time.monotonic_ns() and not big:
            return None
        scope = "x.org_id = ? AND x.agent_id = ?"
        shares = ", ".join(
            "count(*) FILTER (WHERE s.tsv @@ to_tsquery('english', ?))"
            for _ in range(len(terms) + 1)
        )
        total, hits, oldest, newest = (
            yield Stmt(
                f"SELECT t.total, CASE WHEN t.total >= ? THEN (SELECT ARRAY[{shares}] FROM"
                f" (SELECT x.tsv FROM memories x WHERE {scope} ORDER BY x.time DESC LIMIT ?) s)"
                " END,"
                f" (SELECT min(x.time) FROM memories x WHERE {scope}),"
                f" (SELECT max(x.time) FROM memories x WHERE {scope})"
                " FROM (SELECT coalesce(sum(a.memories), 0)::int8 AS total FROM agent_tallies a"
                " WHERE a.org_id = ? AND a.agent_id = ? AND a.hour = ?) t",
                [
                    RANK_WALK_MEMORIES,
                    " | ".join(terms),
                    *terms,
                    *(org_id, agent, RANK_SAMPLE),
                    *(org_id, agent) * 2,
                    *(org_id, agent, sql.ALL_TIME),
                ],
            )
        ).rows[0]
        big = self._remember(key, total >= RANK_WALK_MEMORIES)
        if not big or newest is None or hits is None:
            return None
        if flt.until_ns is not None:
            newest = min(newest, flt.until_ns - 1)
        if flt.since_ns is not None:
            oldest = max(oldest, flt.since_ns + 1)
        high, low = sql.bucket_of(newest, SPAN_NS), sql.bucket_of(oldest, SPAN_NS)
        if not 0 <= high - low < RANK_WALK_SPANS:
            return None
        share = hits[0] / RANK_SAMPLE
        return RankedWalk(
            high,
            low,
            share * total > RANK_WALK_MATCHES and share < RANK_WALK_SHARE,
            frozenset(
                t
                for t, n in zip(terms, hits[1:], strict=True)
                if n * total > TERM_WALK_MATCHES * RANK_SAMPLE
            ),
        )

    def _term_pool(
        self, fewer: str, matched: tuple[str, list[Any]], columns: str, walk: RankedWalk | None
    ) -> tuple[str, list[Any]]:
        """The pool of a ranked query's term, when the pool of any term (``newest``) holds
        ``fewer`` of it: the term's newest ``TERM_POOL`` memories ``matched`` older than that
        pool's oldest, from the history, or walked back from that oldest a span at a time
        (``walk``)."""
        older = "{} <= (SELECT oldest FROM newest LIMIT 1)"
        if walk is None:
            return (
                f"SELECT {columns} FROM memories m WHERE (SELECT {fewer} FROM newest LIMIT 1)"
                f" AND {matched[0]} AND {older.format('m.time')} ORDER BY m.time DESC LIMIT ?",
                [*matched[1], TERM_POOL],
            )
        # ``m.time + 0``: not a condition of the time index, which the planner took over the
        # word index for a partition holding few matches, reading its every memory (the 1M
        # bench's busy agent's common-word query: its rare word's pool 25 ms, against 2.2).
        return self._walk(
            columns,
            f"{matched[0]} AND {older.format('m.time + 0')}",
            matched[1],
            (walk.high, walk.low),
            TERM_POOL,
            SPAN_NS,
            below=(f"SELECT CASE WHEN {fewer} THEN oldest END FROM newest LIMIT 1", []),
        )

    def ranked(
        self, org_id: str, flt: MemoryFilter, where: str, params: list[Any]
    ) -> Op[sql.Result]:
        """ts_rank over the weighted tsvector, for a bounded pool: the ``RANKED_POOL`` newest
        matches of any term and the newest holding every term, and the ``TERM_POOL`` newest
        of each term that the first holds fewer of (of its ``TERM_POOLS`` rarest there). A
        scope with fewer matches is ranked whole; with more, the work follows the pool, not
        the history. A large agent's pool of any term, for words neither common nor rare in
        it, is walked from its history 30 days at a time (``_walked_spans``): the newest
        matches are the same either way. The pool of every term is read from the history
        (its matches are few), and so is a term's own, unless the agent's newest memories
        say its history holds many: then it is walked back from the pool of any term's
        oldest (``_term_pool``; the 1M bench's busy agent's 12-word query 87 → 47 ms
        in-process, its common-word query 35 → 27, the same pages).

        Without the pools of each term, a common word's newest matches filled the pool of
        any term, and an older memory holding only the query's rarer words was never
        ranked: on LoCoMo among distractors (``bench/pool_quality.py --postgres``), recall
        at 10 was 47.1 against 59.5 for ranking every match; 60.6 with them."""
        # Terms are letters and digits only (core.text), so they are safe tsquery lexemes.
        pool = max(RANKED_POOL, 2 * (flt.limit + flt.offset))
        any_term, every_term = " | ".join(flt.query), " & ".join(flt.query)
        matched = f"m.tsv @@ to_tsquery('english', ?) AND {where}"
        # The pools carry a memory's rid, time and words only; the page's memories are read
        # once it is known (sorting whole rows cost more than ranking them: the 1M bench's
        # org query's pool of any term, ranked, 3.9 ms with whole rows, 1.5 without).
        columns = "m.rid, m.time, m.tsv"
        whole = f"SELECT {columns} FROM memories m WHERE {matched} ORDER BY m.time DESC LIMIT ?"
        newest: tuple[str, list[Any]] = (whole, [any_term, *params, pool])
        walk = yield from self._walked_spans(org_id, flt, flt.query)
        if walk is not None and walk.newest:
            spans = (walk.high, walk.low)
            newest = self._walk(columns, matched, [any_term, *params], spans, pool, SPAN_NS)
        rank = "ts_rank('{0.5, 0.4, 0.4, 1.0}', n.tsv, q, 1) AS rank"
        # A rarer term beside a common one: once the common term's newest matches fill the
        # pool of any term, a memory holding only the rarer ones is never ranked. A term
        # that the full pool holds fewer than TERM_POOL matches of has its newest TERM_POOL
        # from before the pool's oldest ranked too (the newer ones are in it already).
        terms = flt.query if len(flt.query) > 1 else ()
        counted = ", ".join(f"t{i}" for i in range(len(terms)))

        def rarest(i: int) -> str:
            """Only the ``TERM_POOLS`` terms the pool of any term holds fewest of have pools of
            their own (ties: the first): each reads its term's older matches (``_term_pool``). A
            12-word query of the 1M bench's busy agent: 193 ms with a pool for every word,
            65 ms with 4; ``bench/pool_quality.py --postgres`` R@10 60.6 and 61.0."""
            if len(terms) <= TERM_POOLS:
                return ""
            return (
                f" AND (SELECT count(*) FROM unnest(ARRAY[{counted}]) WITH ORDINALITY u(t, k)"
                f" WHERE u.t < t{i} OR (u.t = t{i} AND u.k <= {i})) < {TERM_POOLS}"
            )

        counts = "".join(
            f", count(*) FILTER (WHERE n.tsv @@ to_tsquery('english', ?)) OVER () AS t{i}"
            for i in range(len(terms))
        )

        def scored(source: str) -> str:
            return f"(SELECT n.rid, n.time, {rank} FROM ({source}) n, to_tsquery('english', ?) q)"

        # The pool of every term, unless the pool of any term holds every match (it holds
        # that pool too) or each term is common in it: the index intersects the terms' whole
        # lists, and two common words that never meet (two event types) cost 20 ms for the
        # 1M bench's busy agent, to find nothing; where they do meet, the pool of any term
        # holds many memories with every term already.
        every = whole
        if terms:
            gate = f"(SELECT oldest IS NOT NULL AND least({counted}) * ? < ? FROM newest LIMIT 1)"
            every = whole.replace(" ORDER BY", f" AND {gate} ORDER BY", 1)
        halves = ["(SELECT rid, time, rank FROM newest)", scored(every)]
        args = [every_term, *params, *([COMMON_SHARE, pool] if terms else []), pool, any_term]
        for i, term in enumerate(terms):
            walked = walk if walk is not None and term in walk.terms else None
            fewer = f"t{i} < {TERM_POOL}{rarest(i)}"
            own = self._term_pool(fewer, (matched, [term, *params]), columns, walked)
            halves.append(scored(own[0]))
            args += [*own[1], any_term]
        # Ranked above the pools' LIMIT: only the pools' rows pay for ts_rank, not every
        # match. The pool of any term also says how many of it each term matched, and its
        # oldest time once it is full (NULL until then: it holds every match).
        best = "p.rank DESC, p.time DESC, p.rid DESC"
        found = yield Stmt(
            f"WITH newest AS MATERIALIZED (SELECT n.rid, n.time, {rank},"
            " CASE WHEN count(*) OVER () >= ? THEN min(n.time) OVER () END AS oldest"
            f"{counts} FROM ({newest[0]}) n, to_tsquery('english', ?) q)"
            f" SELECT {sql.MEMORY_COLUMNS}, p.rank FROM"
            # a memory in several pools comes back from each, ranked the same
            f" (SELECT DISTINCT * FROM ({' UNION ALL '.join(halves)}) p ORDER BY {best}"
            f" LIMIT ? OFFSET ?) p CROSS JOIN LATERAL (SELECT {sql.MEMORY_COLUMNS} FROM memories m"
            f" WHERE m.org_id = ? AND m.time = p.time AND m.rid = p.rid) m ORDER BY {best}",
            [
                pool,
                *terms,
                *newest[1],
                any_term,
                *args,
                flt.limit,
                flt.offset,
                org_id,
            ],
            replan=True,
        )
        return sql.Result(found.rows, len(found.rows))

    def add_tallies(self, changes: Sequence[sql.Tally]) -> Stmt:
        """One statement for every change (``_unnested``), in their order."""
        return Stmt(_ADD_TALLIES, [_arrays(changes)], True)

    def write_memories(self, memories: Sequence[sql.NewMemory]) -> Op[None]:
        """One statement for all of them (``_unnested``: the rids follow their order); the
        tsvector is a generated column."""
        rows = [
            (*sql.memory_values(org_id, m, self.tag_value(m.tags)), context)
            for org_id, m, context in memories
        ]
        yield Stmt(_INSERT_MEMORIES, [_arrays(rows)], True)

    def erase_where(self, condition: str, params: Sequence[Any]) -> Op[int]:
        """One DELETE: every index is PostgreSQL's own."""
        return (yield Stmt(f"DELETE FROM memories AS m WHERE {condition}", params)).rowcount
