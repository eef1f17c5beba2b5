"""The SQL of both backends, written once.

A store operation is an *op*: a generator that yields statements (``Stmt``, written with
``?`` placeholders) and receives each one's ``Result``. It does no I/O, so the SQLite
writer thread runs it synchronously and PostgreSQL runs it with ``await``, inside one
transaction for writes. A statement that fails on a unique or foreign key constraint is
thrown back into the op as ``DuplicateName`` or ``MissingReference``; an op that handles
such a failure has its writes rolled back, and its return value is still the answer.

``SqlStore`` implements both store protocols on ops. A backend supplies how to run them
(``_read``, ``_write``) and the few hooks where the dialects really differ: tags (a side
table in SQLite, an array in PostgreSQL), the full-text index (FTS5, tsvector), how
memories are written and erased from every index, and locks (SQLite has one writer;
PostgreSQL takes advisory locks).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

import orjson

from memtrace_server.core.ids import memory_id_time
from memtrace_server.core.records import (
    AgentDeletion,
    AgentRecord,
    AgentStatsRecord,
    ApiKeyRecord,
    ConsoleSessionRecord,
    MemoryBatch,
    MemoryFilter,
    MemoryRecord,
    OrgRecord,
    OrgStoreBinding,
    SessionRecord,
)
from memtrace_server.core.rules import (
    DAY_NS,
    adopted_agent,
    fresh_memories,
    latest_activity,
    updated_agent,
    updated_session,
)
from memtrace_server.storage.base import DuplicateName, MissingReference

T = TypeVar("T")

MEMORY_COLUMNS = (
    "m.id, m.org_id, m.agent_id, m.session_id, m.memory_type, m.event_type, m.content, "
    "m.metadata_json, m.tags, m.dedup_key, m.importance, m.parent_id, m.time, m.expires_at, "
    "m.memory_key, m.superseded_by, m.superseded_at"
)
MEMORY_INSERT_COLUMNS = MEMORY_COLUMNS.replace("m.", "")
MEMORY_FIELDS = MEMORY_COLUMNS.count(",") + 1
ORG_COLUMNS = "id, name, created_at, retention_days"
AGENT_COLUMNS = "org_id, id, name, description, config_json, implicit, created_at, last_active_at"
SESSION_COLUMNS = (
    "org_id, id, agent_id, status, metadata_json, created_at, updated_at, closed_at, last_active_at"
)
KEY_COLUMNS = "id, org_id, name, key_digest, key_prefix, permissions, created_at, expires_at"
BINDING_COLUMNS = "org_id, url_cipher, url_nonce, updated_at"

# Lock spaces: the same key in two spaces never collides.
AGENT_LOCK, DEDUP_LOCK, IMPORT_LOCK, SCHEMA_LOCK, KEY_LOCK = 1, 0, 2, 3, 5
DEDUP_KEYS_PER_QUERY = 512
# Concurrent inserts are coalesced into ops of at most this many memories.
MAX_COALESCED = 1000
PROBES_PER_QUERY = 512
HOUR_NS = 3600 * 10**9
ALL_TIME = -(2**62)  # the ``hour`` of an agent's all-time tally row
TALLY_INSERT = "INSERT INTO agent_tallies (org_id, agent_id, memory_type, hour, memories, errors)"
TALLY_ADDED = (
    " ON CONFLICT (org_id, agent_id, memory_type, hour) DO UPDATE"
    " SET memories = agent_tallies.memories + excluded.memories,"
    " errors = agent_tallies.errors + excluded.errors"
)
SESSIONS_SQL = (
    "INSERT INTO agent_sessions (org_id, agent_id, sessions, active) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (org_id, agent_id) DO UPDATE"
    " SET sessions = agent_sessions.sessions + excluded.sessions,"
    " active = agent_sessions.active + excluded.active"
)


@dataclass(frozen=True, slots=True)
class Stmt:
    """One statement with ``?`` placeholders; with ``many``, ``params`` is a list of rows
    and the op does not read the result (a backend may queue it without waiting). With
    ``replan``, its best plan depends on its values (a text search's terms): a backend
    that caches plans across executions plans it for its values every time."""

    sql: str
    params: Sequence[Any] = ()
    many: bool = False
    replan: bool = False
    together: tuple[Stmt, ...] = ()  # see ``together()``


@dataclass(frozen=True, slots=True)
class Result:
    """What a statement returned: its rows (none for most writes) and rows affected; for
    statements run ``together()``, the result of each in ``parts``."""

    rows: list[tuple[Any, ...]]
    rowcount: int
    parts: tuple[Result, ...] = ()

    def one(self) -> tuple[Any, ...] | None:
        """The first row, if any."""
        return self.rows[0] if self.rows else None


Op = Generator[Stmt, Result, T]


class NewMemory(NamedTuple):
    """A memory to write: its org, the record, and the words it borrows from the memory
    before it in its session (its full-text context)."""

    org_id: str
    memory: MemoryRecord
    context: str


CONFLICTS = (DuplicateName, MissingReference)


class Steps(Generic[T]):
    """Steps an op through its statements (sans I/O: the backend runs each statement).

    Set ``result`` (or ``error``) after running the statement ``next()`` gave; ``next()``
    returns None once the op has finished, with its return value in ``value``.
    """

    def __init__(self, op: Op[T]) -> None:
        self._op = op
        self._started = False
        self.result: Result | None = None
        self.error: Exception | None = None
        self.handled = False  # a failed statement was caught by the op: undo its writes
        self.value: T

    def next(self) -> Stmt | None:
        """The next statement to run, or None when the op returned."""
        try:
            if not self._started:
                self._started = True
                return next(self._op)
            if self.error is not None:
                error, self.error = self.error, None
                # Set first: an op that catches the error and returns at once (the throw
                # raising StopIteration) has its writes undone too.
                self.handled = True
                return self._op.throw(error)
            assert self.result is not None
            return self._op.send(self.result)
        except StopIteration as stop:
            self.value = stop.value
            return None


def together(stmts: Sequence[Stmt]) -> Stmt:
    """Statements none of whose parameters come from another's result, as one step: run
    in order, each seeing what the ones before it did, their results in ``Result.parts``.
    A backend may send them all before reading an answer (PostgreSQL: one round trip)."""
    return Stmt("", together=tuple(stmts))


def run(stmt: Stmt) -> Op[Result]:
    """An op of one statement."""
    return (yield stmt)


def counted_sessions(org_id: str, agent_id: str, sessions: int, active: int) -> Stmt:
    """Add to an agent's session counts (``agent_sessions``, read by agent stats)."""
    return Stmt(SESSIONS_SQL, (org_id, agent_id, sessions, active))


def guarded(stmt: Stmt, *, duplicate: str | None = None, missing: str | None = None) -> Op[Result]:
    """Run ``stmt``, restating a constraint failure with a message for the caller."""
    try:
        return (yield stmt)
    except DuplicateName as exc:
        if duplicate is None:
            raise
        raise DuplicateName(duplicate) from exc
    except MissingReference as exc:
        if missing is None:
            raise
        raise MissingReference(missing) from exc


BRIEF_ROWS = 2000  # a page of a brief list reads at most this many rows


def page_bounded(flt: MemoryFilter) -> bool:
    """Whether a list's read is brief: it walks an index of its scope (org, agent or
    session) in time order and stops at its page. Ranking, substrings, tags, metadata,
    types, importance and keys may each skip any number of rows first."""
    return (
        not flt.query
        and flt.content_contains is None
        and not flt.tags
        and not flt.metadata
        and not flt.memory_types
        and not flt.event_types
        and flt.min_importance is None
        and flt.key is None
        and flt.offset + flt.limit <= BRIEF_ROWS
    )


def bucket_of(time_ns: int, unit: int) -> int:
    """A time divided by ``unit``, truncated toward zero like SQL's integer division."""
    return time_ns // unit if time_ns >= 0 else -(-time_ns // unit)


def bucket_start(bucket: int, unit: int) -> int:
    """The first time of a ``bucket_of``: bucket b < 0 holds ((b - 1) unit, b unit], bucket 0
    (-unit, unit)."""
    return bucket * unit if bucket > 0 else (bucket - 1) * unit + 1


def hour_of(time_ns: int) -> int:
    """The tally hour of a time (``bucket_of`` hours)."""
    return bucket_of(time_ns, HOUR_NS)


Tally = tuple[str, str, str, int, int, int]  # org, agent, memory type, hour, memories, errors


def tally(rows: Iterable[Tally], sign: int = 1) -> list[Tally]:
    """The changes to ``agent_tallies`` for changes of current memories, per hour and in all
    (``SqlStore.add_tallies`` writes them).

    Rows are summed per tally row and sorted, so concurrent writers lock them in one order.
    """
    sums: dict[tuple[str, str, str, int], list[int]] = {}
    for org_id, agent_id, memory_type, hour, memories, errors in rows:
        for at in (hour, ALL_TIME):
            total = sums.setdefault((org_id, agent_id, memory_type, at), [0, 0])
            total[0] += sign * int(memories)
            total[1] += sign * int(errors)
    return [(*k, n, e) for k, (n, e) in sorted(sums.items()) if n or e]


def memory_tallies(org_id: str, memories: Iterable[MemoryRecord]) -> list[Tally]:
    """Tally rows of memories that are (or were) current."""
    return [
        (org_id, m.agent_id, m.memory_type, hour_of(m.time_ns), 1, int(m.event_type == "error"))
        for m in memories
        if not m.superseded_by
    ]


def marks(n: int) -> str:
    """``?, ?, …`` for ``n`` values."""
    return ", ".join("?" * n)


# Stored neighbours: the (time, content) of the newest memory of a session at or before a
# time, by (session, time); with the spans of time a batch writes to each session.
Neighbours = dict[tuple[str, int], tuple[int, str]]
KnownNeighbours = tuple[dict[str, tuple[int, int]], Neighbours]


def session_spans(memories: Iterable[MemoryRecord]) -> dict[str, tuple[int, int]]:
    """The (earliest, latest) time of the memories of each session among ``memories``."""
    spans: dict[str, tuple[int, int]] = {}
    for m in memories:
        if m.session_id:
            low, high = spans.get(m.session_id, (m.time_ns, m.time_ns))
            spans[m.session_id] = (min(low, m.time_ns), max(high, m.time_ns))
    return spans


def latest_probes(spans: dict[str, tuple[int, int]]) -> list[tuple[str, int]]:
    """The (session, latest time) of each span: where its stored neighbour is looked up."""
    return [(session, high) for session, (_, high) in spans.items()]


def padded(values: Sequence[T]) -> list[T]:
    """``values`` (not empty) with the last one repeated up to a power of two, so a statement
    of one row or list item per value has few distinct texts (and stays prepared)."""
    size = 1 << (len(values) - 1).bit_length()
    return [*values, *[values[-1]] * (size - len(values))]


def dump_json(value: dict[str, Any] | None) -> str | None:
    """JSON text of a non-empty object, else None."""
    return orjson.dumps(value).decode() if value else None


def load_json(text: str | None) -> Any:
    """The object stored as JSON text (None for NULL or empty)."""
    return orjson.loads(text) if text else None


def agent_values(a: AgentRecord) -> tuple[Any, ...]:
    """An agent's values in ``AGENT_COLUMNS`` order."""
    config = dump_json(a.config) or "{}"
    return (
        a.org_id,
        a.id,
        a.name,
        a.description,
        config,
        a.implicit,
        a.created_at_ns,
        a.last_active_at_ns,
    )


def session_values(org_id: str, s: SessionRecord) -> tuple[Any, ...]:
    """A session's values in ``SESSION_COLUMNS`` order."""
    metadata = dump_json(s.metadata) or "{}"
    return (
        org_id,
        s.id,
        s.agent_id,
        s.status,
        metadata,
        s.created_at_ns,
        s.updated_at_ns,
        s.closed_at_ns,
        s.last_active_at_ns,
    )


def memory_values(org_id: str, m: MemoryRecord, tags: Any) -> tuple[Any, ...]:
    """A memory's values in ``MEMORY_INSERT_COLUMNS`` order; ``tags`` as the backend's ``tag_value`` sends them."""
    return (
        m.id,
        org_id,
        m.agent_id,
        m.session_id,
        m.memory_type,
        m.event_type,
        m.content,
        dump_json(m.metadata),
        tags,
        m.dedup_key,
        m.importance,
        m.parent_id,
        m.time_ns,
        m.expires_at_ns,
        m.key or None,
        m.superseded_by or None,
        m.superseded_at_ns,
    )


def memory_from_row(row: Sequence[Any], tags: Callable[[Any], tuple[str, ...]]) -> MemoryRecord:
    """A memory from a row of ``MEMORY_COLUMNS``; ``tags`` decodes the backend's tag value.
    Positional, in ``MemoryRecord``'s field order: a read builds one per row, and keywords
    cost a fifth more."""
    return MemoryRecord(
        row[0],  # id
        row[1],  # org_id
        row[2],  # agent_id
        row[6],  # content
        row[12],  # time_ns
        row[4],  # memory_type
        row[5],  # event_type
        row[3],  # session_id
        load_json(row[7]),  # metadata
        tags(row[8]),
        row[9],  # dedup_key
        row[10],  # importance
        row[11],  # parent_id
        row[13],  # expires_at_ns
        None,  # score
        row[14] or "",  # key
        row[15] or "",  # superseded_by
        row[16],  # superseded_at_ns
    )


def org_from_row(row: Sequence[Any]) -> OrgRecord:
    """An org from a row of ``ORG_COLUMNS``."""
    return OrgRecord(id=row[0], name=row[1], created_at_ns=row[2], retention_days=row[3])


def agent_from_row(row: Sequence[Any]) -> AgentRecord:
    """An agent from a row of ``AGENT_COLUMNS``."""
    return AgentRecord(
        org_id=row[0],
        id=row[1],
        name=row[2],
        description=row[3],
        config=load_json(row[4]),
        implicit=bool(row[5]),
        created_at_ns=row[6],
        last_active_at_ns=row[7],
    )


def session_from_row(row: Sequence[Any]) -> SessionRecord:
    """A session from a row of ``SESSION_COLUMNS``."""
    return SessionRecord(
        org_id=row[0],
        id=row[1],
        agent_id=row[2],
        status=row[3],
        metadata=load_json(row[4]),
        created_at_ns=row[5],
        updated_at_ns=row[6],
        closed_at_ns=row[7],
        last_active_at_ns=row[8],
    )


def key_from_row(row: Sequence[Any]) -> ApiKeyRecord:
    """An API key from a row of ``KEY_COLUMNS``."""
    return ApiKeyRecord(
        id=row[0],
        org_id=row[1],
        name=row[2],
        key_digest=row[3],
        key_prefix=row[4],
        permissions=frozenset(p for p in row[5].split(",") if p),
        created_at_ns=row[6],
        expires_at_ns=row[7],
    )


def migration_scripts(backend: str) -> list[tuple[int, list[str]]]:
    """(version, statements) of a backend's migration files, oldest first.

    Statements end with a semicolon at a line end; the files hold no procedural code.
    """
    folder = resources.files("memtrace_server.storage.migrations") / backend
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            lines = entry.read_text(encoding="utf-8").splitlines()
            text = "\n".join(line for line in lines if not line.strip().startswith("--"))
            statements = [s.strip().rstrip(";") for s in (text + "\n").split(";\n")]
            found.append((int(entry.name.split("_", 1)[0]), [s for s in statements if s]))
    return sorted(found)


class SqlStore(ABC):
    """Both store protocols over SQL, for any backend that runs ops and fills the hooks."""

    backend: ClassVar[str]  # the folder of its migrations

    @abstractmethod
    def contains(self, needle: str) -> tuple[str, Any]:
        """A condition (on alias ``m``) true when ``m.content`` holds the substring, case
        and all, and its parameter."""

    for_update: ClassVar[str] = ""  # row lock for read-modify-write, where there are locks
    probe_id_time: ClassVar[bool] = False  # look a memory up by its id's time first
    score_sign: ClassVar[float] = 1.0  # the ranked statement's last column times this
    # ``agent_tallies`` read by (org, agent, hour): an agent's all-time rows or a window's
    # hours, never all of its hours (the tallies' key puts the memory type before the hour).
    tallies_by_hour: ClassVar[str] = "agent_tallies"

    # running ops

    @abstractmethod
    async def _read(self, op: Op[T], *, brief: bool = False) -> T:
        """Run a read-only op. A ``brief`` one is bounded by a few index lookups and its
        page (see ``page_bounded``): a backend may run it on the caller's thread."""

    @abstractmethod
    async def _write(self, op: Op[T]) -> T:
        """Run an op in one transaction; it is committed when this returns."""

    async def _rows(
        self, sql: str, params: Sequence[Any] = (), *, brief: bool = False
    ) -> list[tuple[Any, ...]]:
        return (await self._read(run(Stmt(sql, params)), brief=brief)).rows

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of a statement that looks up one row by a key (a brief read)."""
        return (await self._read(run(Stmt(sql, params)), brief=True)).one()

    async def _changed(self, sql: str, params: Sequence[Any] = ()) -> int:
        return (await self._write(run(Stmt(sql, params)))).rowcount

    # dialect hooks

    def lock_statements(self, keys: Sequence[str], space: int) -> list[Stmt]:
        """The statements that serialise writers of each key (in the order given) until the
        transaction ends (none: one writer)."""
        return []

    def locks(self, keys: Sequence[str], space: int) -> Op[None]:
        """Lock each key, in the order given (``lock_statements``)."""
        for stmt in self.lock_statements(keys, space):  # noqa: UP028 (a list takes no send())
            yield stmt

    def lock(self, key: str, space: int) -> Op[None]:
        """Lock one key (``lock_statements``)."""
        yield from self.locks([key], space)

    @abstractmethod
    def tag_value(self, tags: tuple[str, ...]) -> Any:
        """Tags as ``write_memories`` sends them to the memories table."""

    @abstractmethod
    def tags_of(self, value: Any) -> tuple[str, ...]:
        """Tags from the memories table's value."""

    @abstractmethod
    def tags_clause(self, org_id: str, flt: MemoryFilter) -> tuple[list[str], list[Any]]:
        """Conditions (on alias ``m``) that every tag of the filter is present."""

    @abstractmethod
    def metadata_clause(
        self, org_id: str, fields: Sequence[tuple[str, Any]]
    ) -> tuple[list[str], list[Any]]:
        """Conditions (on alias ``m``) that each top-level metadata field equals its value."""

    def time_ordered_source(
        self, org_id: str, flt: MemoryFilter
    ) -> Op[tuple[str, list[Any], str, MemoryFilter] | None]:
        """A FROM clause that yields a filter's memories in time order faster than scanning
        ``memories`` (its parameters, the alias whose time and rid order it, and the filter
        left for WHERE); None to scan ``memories`` itself."""
        yield from ()
        return None

    def add_tallies(self, changes: Sequence[Tally]) -> Stmt:
        """One statement adding ``changes`` (from ``tally``, in their order) to
        ``agent_tallies``."""
        return Stmt(f"{TALLY_INSERT} VALUES (?, ?, ?, ?, ?, ?){TALLY_ADDED}", changes, True)

    def dedup_lookup(self, org_id: str, keys: Sequence[str], window: Sequence[int]) -> Stmt:
        """(dedup key, time, expiry) of the org's stored memories holding one of ``keys`` (at
        most ``DEDUP_KEYS_PER_QUERY``), with ``window`` = (after, before, unexpired at)."""
        chunk = padded(keys)
        return Stmt(
            "SELECT dedup_key, time, expires_at FROM memories WHERE org_id = ?"
            f" AND dedup_key IN ({marks(len(chunk))}) AND time > ? AND time < ?"
            " AND (expires_at IS NULL OR expires_at > ?)",
            (org_id, *chunk, *window),
        )

    def recent_page(self, org_id: str, flt: MemoryFilter) -> Op[list[tuple[Any, ...]] | None]:
        """A page of a time-ordered read from a backend's faster walk of the scope's recent
        memories, when that walk alone is enough; None to read it the usual way."""
        yield from ()
        return None

    @abstractmethod
    def ranked(self, org_id: str, flt: MemoryFilter, where: str, params: list[Any]) -> Op[Result]:
        """Memories matching ``where`` and any term of ``flt.query``, best first, with
        ``MEMORY_COLUMNS`` and a score column last."""

    @abstractmethod
    def write_memories(self, memories: Sequence[NewMemory]) -> Op[None]:
        """Insert memories into every index, in order."""

    @abstractmethod
    def erase_where(self, condition: str, params: Sequence[Any]) -> Op[int]:
        """Erase the memories (alias ``m``) matching ``condition`` from every index."""

    def _memory(self, row: Sequence[Any]) -> MemoryRecord:
        return memory_from_row(row, self.tags_of)

    # schema

    def _migrate(self, now_s: int) -> Op[None]:
        yield Stmt(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )
        yield from self.lock("schema", SCHEMA_LOCK)
        done = {row[0] for row in (yield Stmt("SELECT version FROM schema_migrations")).rows}
        for version, statements in migration_scripts(self.backend):
            if version not in done:
                for statement in statements:
                    yield Stmt(statement)
                yield Stmt(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, now_s),
                )

    async def ping(self) -> None:
        """Run a trivial query."""
        await self._rows("SELECT 1")

    # control: organisations, keys, bindings

    async def create_org(self, org: OrgRecord) -> None:
        """Insert an org."""
        sql = "INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)"
        params = (org.id, org.name, org.created_at_ns)
        await self._write(guarded(Stmt(sql, params), duplicate=f"org '{org.id}' already exists"))

    async def list_orgs(self) -> list[OrgRecord]:
        """All orgs, oldest first."""
        rows = await self._rows(f"SELECT {ORG_COLUMNS} FROM orgs ORDER BY created_at, id")
        return [org_from_row(row) for row in rows]

    async def get_org(self, org_id: str) -> OrgRecord | None:
        """One org."""
        row = await self._one(f"SELECT {ORG_COLUMNS} FROM orgs WHERE id = ?", (org_id,))
        return org_from_row(row) if row else None

    async def delete_org(self, org_id: str) -> bool:
        """Delete an org's keys, binding and row."""

        def op() -> Op[bool]:
            for table in ("api_keys", "org_stores"):
                yield Stmt(f"DELETE FROM {table} WHERE org_id = ?", (org_id,))
            return (yield Stmt("DELETE FROM orgs WHERE id = ?", (org_id,))).rowcount > 0

        return await self._write(op())

    async def set_org_retention(self, org_id: str, days: int | None) -> bool:
        """Set or clear an org's retention in days."""
        return (
            await self._changed("UPDATE orgs SET retention_days = ? WHERE id = ?", (days, org_id))
            > 0
        )

    async def create_key(
        self, org_id: str, name: str, digest: str, prefix: str, permissions: str, now_ns: int
    ) -> ApiKeyRecord:
        """Store a key digest."""
        stmt = Stmt(
            "INSERT INTO api_keys (org_id, name, key_digest, key_prefix, permissions, created_at)"
            f" VALUES (?, ?, ?, ?, ?, ?) RETURNING {KEY_COLUMNS}",
            (org_id, name, digest, prefix, permissions, now_ns),
        )
        result = await self._write(
            guarded(
                stmt,
                duplicate=f"key with name '{name}' already exists",
                missing=f"org '{org_id}' not found",
            )
        )
        return key_from_row(result.rows[0])

    async def list_keys(self, org_id: str) -> list[ApiKeyRecord]:
        """Keys of one org, oldest first."""
        rows = await self._rows(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = ? ORDER BY id", (org_id,)
        )
        return [key_from_row(r) for r in rows]

    async def revoke_key(self, key_id: int, org_id: str | None = None) -> bool:
        """Delete a key (within ``org_id`` when given)."""
        if org_id is None:
            return await self._changed("DELETE FROM api_keys WHERE id = ?", (key_id,)) > 0
        sql = "DELETE FROM api_keys WHERE id = ? AND org_id = ?"
        return await self._changed(sql, (key_id, org_id)) > 0

    async def find_key(self, digest: str) -> ApiKeyRecord | None:
        """The key stored under this digest."""
        row = await self._one(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_digest = ?", (digest,))
        return key_from_row(row) if row else None

    async def set_org_store(self, binding: OrgStoreBinding) -> None:
        """Bind an org to its own store, replacing any binding."""
        stmt = Stmt(
            f"INSERT INTO org_stores ({BINDING_COLUMNS}) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (org_id) DO UPDATE SET url_cipher = excluded.url_cipher,"
            " url_nonce = excluded.url_nonce, updated_at = excluded.updated_at",
            (binding.org_id, binding.url_cipher, binding.url_nonce, binding.updated_at_ns),
        )
        await self._write(guarded(stmt, missing=f"org '{binding.org_id}' not found"))

    async def list_org_stores(self) -> list[OrgStoreBinding]:
        """Every binding."""
        rows = await self._rows(f"SELECT {BINDING_COLUMNS} FROM org_stores", brief=True)
        return [OrgStoreBinding(r[0], bytes(r[1]), bytes(r[2]), r[3]) for r in rows]

    async def delete_org_store(self, org_id: str) -> bool:
        """Remove a binding."""
        return await self._changed("DELETE FROM org_stores WHERE org_id = ?", (org_id,)) > 0

    # tenant: the org's anchor row and its data as a whole

    async def ensure_org(self, org: OrgRecord) -> None:
        """Insert the org's row unless it exists."""
        await self._changed(
            f"INSERT INTO orgs ({ORG_COLUMNS}) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (org.id, org.name, org.created_at_ns, org.retention_days),
        )

    async def erase_org(self, org_id: str) -> None:
        """Delete every agent, session and memory of the org."""

        def op() -> Op[None]:
            yield from self.erase_where("m.org_id = ?", (org_id,))
            for table in ("sessions", "agent_sessions", "agents", "agent_tallies"):
                yield Stmt(f"DELETE FROM {table} WHERE org_id = ?", (org_id,))

        await self._write(op())

    async def usage(self, org_id: str) -> dict[str, int]:
        """How many agents, sessions and memories the org has here."""

        def op() -> Op[dict[str, int]]:
            counts = {}
            for table in ("agents", "sessions", "memories"):
                sql = f"SELECT count(*) FROM {table} WHERE org_id = ?"
                counts[table] = int((yield Stmt(sql, (org_id,))).rows[0][0])
            return counts

        return await self._read(op())

    # agents

    def _find_agent(self, org_id: str, ref: str) -> Op[AgentRecord | None]:
        row = (
            yield Stmt(
                f"SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = ? AND (id = ? OR name = ?)"
                " ORDER BY (id = ?) DESC LIMIT 1",
                (org_id, ref, ref, ref),
            )
        ).one()
        return agent_from_row(row) if row else None

    def _insert_agent(self, agent: AgentRecord) -> Stmt:
        return Stmt(
            f"INSERT INTO agents ({AGENT_COLUMNS}) VALUES ({marks(8)})", agent_values(agent)
        )

    async def register_agent(self, org_id: str, agent: AgentRecord) -> AgentRecord:
        """Insert an agent or adopt the implicit one of the same name."""

        def op() -> Op[AgentRecord]:
            yield from self.lock(f"{org_id}|{agent.name}", AGENT_LOCK)
            row = (
                yield Stmt(
                    f"SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = ? AND name = ?",
                    (org_id, agent.name),
                )
            ).one()
            if row is None:
                yield from guarded(self._insert_agent(agent), duplicate=agent.name)
                return agent
            adopted = adopted_agent(agent_from_row(row), agent)
            if adopted is None:
                raise DuplicateName(agent.name)
            yield Stmt(
                "UPDATE agents SET description = ?, config_json = ?, implicit = ?"
                " WHERE org_id = ? AND id = ?",
                (adopted.description, dump_json(adopted.config) or "{}", False, org_id, adopted.id),
            )
            return adopted

        return await self._write(op())

    async def ensure_agent(self, org_id: str, ref: str, implicit: AgentRecord) -> AgentRecord:
        """Resolve an agent by id or name, registering ``implicit`` when absent."""
        found = await self.get_agent(org_id, ref)
        if found is not None:
            return found

        def op() -> Op[AgentRecord]:
            yield from self.lock(f"{org_id}|{ref}", AGENT_LOCK)
            found = yield from self._find_agent(org_id, ref)
            if found is not None:
                return found
            yield self._insert_agent(implicit)
            return implicit

        return await self._write(op())

    async def get_agent(self, org_id: str, ref: str) -> AgentRecord | None:
        """The agent with this id, else this name."""
        return await self._read(self._find_agent(org_id, ref), brief=True)

    async def list_agents(self, org_id: str) -> list[AgentRecord]:
        """Agents of an org, newest first."""
        rows = await self._rows(
            f"SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = ? ORDER BY created_at DESC, id",
            (org_id,),
        )
        return [agent_from_row(r) for r in rows]

    async def update_agent(
        self,
        org_id: str,
        agent_id: str,
        description: str | None,
        config_patch: dict[str, Any] | None,
    ) -> AgentRecord | None:
        """Change an agent's description and merge its config."""

        def op() -> Op[AgentRecord | None]:
            row = (
                yield Stmt(
                    f"SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = ? AND id = ?{self.for_update}",
                    (org_id, agent_id),
                )
            ).one()
            if row is None:
                return None
            agent = updated_agent(agent_from_row(row), description, config_patch)
            yield Stmt(
                "UPDATE agents SET description = ?, config_json = ? WHERE org_id = ? AND id = ?",
                (agent.description, dump_json(agent.config) or "{}", org_id, agent_id),
            )
            return agent

        return await self._write(op())

    async def delete_agent(self, org_id: str, agent_id: str) -> AgentDeletion:
        """Delete an agent that no session refers to."""

        def op() -> Op[AgentDeletion]:
            sessions = (
                yield Stmt(
                    "SELECT count(*) FROM sessions WHERE org_id = ? AND agent_id = ?",
                    (org_id, agent_id),
                )
            ).rows[0][0]
            if sessions:
                return AgentDeletion("has_sessions", int(sessions))
            try:
                deleted = yield Stmt(
                    "DELETE FROM agents WHERE org_id = ? AND id = ?", (org_id, agent_id)
                )
            except MissingReference:
                return AgentDeletion("has_sessions", 1)  # a session appeared meanwhile
            return AgentDeletion("deleted" if deleted.rowcount else "absent")

        return await self._write(op())

    async def erase_agent(self, org_id: str, agent: AgentRecord) -> None:
        """Delete an agent, its sessions and its memories (under its id or its name)."""

        def op() -> Op[None]:
            # through the tallies like any erase: a store may keep the org's total there too
            yield from self._erase(
                "m.org_id = ? AND m.agent_id IN (?, ?)", (org_id, agent.id, agent.name)
            )
            for table in ("sessions", "agent_sessions", "agents"):
                column = "id" if table == "agents" else "agent_id"
                yield Stmt(
                    f"DELETE FROM {table} WHERE org_id = ? AND {column} = ?", (org_id, agent.id)
                )
            yield Stmt(  # last, as writers update an agent's row before its tallies
                "DELETE FROM agent_tallies WHERE org_id = ? AND agent_id IN (?, ?)",
                (org_id, agent.id, agent.name),
            )

        await self._write(op())

    async def agent_stats(self, org_id: str, agent_id: str, since_ns: int) -> AgentStatsRecord:
        """Counts for one agent id, from its tallies: the work is bounded by the hours of
        the window and one hour of memories, not by the agent's history."""
        scope = "WHERE org_id = ? AND agent_id = ?"
        hour = hour_of(since_ns)
        hour_end = bucket_start(hour + 1, HOUR_NS)

        def op() -> Op[AgentStatsRecord]:
            types = {
                str(t): int(n)
                for t, n in (
                    yield Stmt(
                        f"SELECT memory_type, memories FROM {self.tallies_by_hour} {scope}"
                        " AND hour = ? AND memories > 0",
                        (org_id, agent_id, ALL_TIME),
                    )
                ).rows
            }
            later, later_errors = (
                yield Stmt(
                    "SELECT coalesce(sum(memories), 0), coalesce(sum(errors), 0)"
                    f" FROM {self.tallies_by_hour} {scope} AND hour > ?",
                    (org_id, agent_id, hour),
                )
            ).rows[0]
            # The window's first hour in part: its memories after ``since_ns``.
            first, first_errors = (
                yield Stmt(
                    "SELECT count(*), count(*) FILTER (WHERE event_type = 'error')"
                    f" FROM memories {scope} AND time > ? AND time < ? AND superseded_by IS NULL",
                    (org_id, agent_id, since_ns, hour_end),
                )
            ).rows[0]
            last = (
                yield Stmt(
                    f"SELECT time FROM memories {scope} AND superseded_by IS NULL"
                    " ORDER BY time DESC LIMIT 1",
                    (org_id, agent_id),
                )
            ).one()
            counted = (
                yield Stmt(
                    f"SELECT sessions, active FROM agent_sessions {scope}", (org_id, agent_id)
                )
            ).one()
            sessions, active = counted or (0, 0)
            return AgentStatsRecord(
                memory_count=sum(types.values()),
                memories_24h=int(later) + int(first),
                errors_24h=int(later_errors) + int(first_errors),
                session_count=int(sessions),
                active_sessions=int(active),
                last_active_at_ns=last[0] if last else None,
                memory_types=types,
            )

        return await self._read(op())

    # sessions

    def _find_session(
        self, org_id: str, session_id: str, lock: str = ""
    ) -> Op[SessionRecord | None]:
        row = (
            yield Stmt(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE org_id = ? AND id = ?{lock}",
                (org_id, session_id),
            )
        ).one()
        return session_from_row(row) if row else None

    async def create_session(self, org_id: str, session: SessionRecord) -> None:
        """Insert a session for an existing agent."""
        stmt = Stmt(
            f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({marks(9)})",
            session_values(org_id, session),
        )

        def op() -> Op[None]:
            yield from guarded(stmt, missing=f"agent '{session.agent_id}' not found")
            yield counted_sessions(org_id, session.agent_id, 1, int(session.status == "active"))

        await self._write(op())

    async def get_session(self, org_id: str, session_id: str) -> SessionRecord | None:
        """One session."""
        return await self._read(self._find_session(org_id, session_id), brief=True)

    async def list_sessions(self, org_id: str, agent_id: str | None) -> list[SessionRecord]:
        """Sessions, newest first."""
        sql = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE org_id = ?"
        params: tuple[str, ...] = (org_id,)
        if agent_id:
            sql, params = sql + " AND agent_id = ?", (org_id, agent_id)
        rows = await self._rows(sql + " ORDER BY created_at DESC, id", params)
        return [session_from_row(r) for r in rows]

    async def update_session(
        self,
        org_id: str,
        session_id: str,
        status: str | None,
        metadata_patch: dict[str, Any] | None,
        now_ns: int,
    ) -> SessionRecord | None:
        """Change status and merge metadata in one transaction."""

        def op() -> Op[SessionRecord | None]:
            current = yield from self._find_session(org_id, session_id, self.for_update)
            if current is None:
                return None
            new = updated_session(current, status, metadata_patch, now_ns)
            opened = (new.status == "active") - (current.status == "active")
            if opened:
                yield counted_sessions(org_id, current.agent_id, 0, opened)
            yield Stmt(
                "UPDATE sessions SET status = ?, metadata_json = ?, updated_at = ?, closed_at = ?"
                " WHERE org_id = ? AND id = ?",
                (
                    new.status,
                    dump_json(new.metadata) or "{}",
                    now_ns,
                    new.closed_at_ns,
                    org_id,
                    session_id,
                ),
            )
            return new

        return await self._write(op())

    async def delete_session(self, org_id: str, session_id: str, cascade: bool) -> bool:
        """Delete a session (and, with ``cascade``, the memories that carry its id)."""

        def op() -> Op[bool]:
            current = yield from self._find_session(org_id, session_id, self.for_update)
            if current is None:
                return False
            sql = "DELETE FROM sessions WHERE org_id = ? AND id = ?"
            yield Stmt(sql, (org_id, session_id))
            yield counted_sessions(org_id, current.agent_id, -1, -(current.status == "active"))
            if cascade:
                yield from self._erase("m.org_id = ? AND m.session_id = ?", (org_id, session_id))
            return True

        return await self._write(op())

    # memories

    def memory_filter(self, org_id: str, flt: MemoryFilter) -> tuple[str, list[Any]]:
        """WHERE clause (without the keyword, on alias ``m``) and parameters for a filter."""
        where = ["m.org_id = ?"]
        params: list[Any] = [org_id]
        for condition, value in (
            ("m.agent_id = ?", flt.agent_id),
            ("m.session_id = ?", flt.session_id),
            ("m.time > ?", flt.since_ns),
            ("m.time < ?", flt.until_ns),
            ("m.importance >= ?", flt.min_importance),
            ("(m.expires_at IS NULL OR m.expires_at > ?)", flt.visible_at_ns),
        ):
            if value is not None:
                where.append(condition)
                params.append(value)
        for column, values in (("memory_type", flt.memory_types), ("event_type", flt.event_types)):
            if values:
                where.append(f"m.{column} IN ({marks(len(values))})")
                params.extend(values)
        if flt.tags:
            clauses, tag_params = self.tags_clause(org_id, flt)
            where.extend(clauses)
            params.extend(tag_params)
        if flt.content_contains:
            clause, value = self.contains(flt.content_contains)
            where.append(clause)
            params.append(value)
        if flt.key is not None:
            where.append("m.memory_key = ?")
            params.append(flt.key)
        if not flt.include_superseded:
            where.append("m.superseded_by IS NULL")
        if flt.metadata:
            clauses, meta_params = self.metadata_clause(org_id, flt.metadata)
            where.extend(clauses)
            params.extend(meta_params)
        return " AND ".join(where), params

    def _dedup_probes(self, org_id: str, batches: Sequence[MemoryBatch]) -> list[Stmt]:
        """The lookups of stored memories sharing a dedup key with a memory of a batch that
        has a window, near its time, and unexpired at the earliest of the batches' nows
        (read by ``_dedup_found``)."""
        probes = [
            (m, b.dedup_window_ns)
            for b in batches
            if b.dedup_window_ns is not None
            for m in b.memories
            if m.dedup_key
        ]
        if not probes:
            return []
        keys = sorted({m.dedup_key for m, _ in probes})
        low = min(m.time_ns - window for m, window in probes)
        high = max(m.time_ns + window for m, window in probes)
        now = min(b.now_ns for b in batches)
        return [
            self.dedup_lookup(org_id, keys[start : start + DEDUP_KEYS_PER_QUERY], (low, high, now))
            for start in range(0, len(keys), DEDUP_KEYS_PER_QUERY)
        ]

    @staticmethod
    def _dedup_found(results: Iterable[Result]) -> dict[str, list[tuple[int, int | None]]]:
        """(time, expiry) of the stored memories of each dedup key ``_dedup_probes`` found."""
        found: dict[str, list[tuple[int, int | None]]] = {}
        for result in results:
            for key, when, expires in result.rows:
                found.setdefault(key, []).append((when, expires))
        return found

    @staticmethod
    def _before_probes(org_id: str, probes: Sequence[tuple[str, int]]) -> list[Stmt]:
        """For each (session, time): the lookup of the newest stored memory of the session
        at or before that time, by time, then insertion (read by ``_before_found``).

        The same index seek twice per probe (for the time, for the content) is cheaper than a
        second statement, and portable where a lateral join is not."""
        newest = (
            "(SELECT x.{} FROM memories x WHERE x.org_id = ? AND x.session_id = v.column1"
            " AND x.time <= v.column2 ORDER BY x.time DESC, x.rid DESC LIMIT 1)"
        )
        stmts = []
        for start in range(0, len(probes), PROBES_PER_QUERY):
            chunk = padded(probes[start : start + PROBES_PER_QUERY])
            stmts.append(
                Stmt(
                    f"SELECT v.column1, v.column2, {newest.format('time')},"
                    f" {newest.format('content')}"
                    f" FROM (VALUES {', '.join(['(?, ?)'] * len(chunk))}) AS v",
                    (org_id, org_id, *(value for probe in chunk for value in probe)),
                )
            )
        return stmts

    @staticmethod
    def _before_found(results: Iterable[Result]) -> Neighbours:
        """The (time, content) ``_before_probes`` found for each (session, time) probed."""
        found: Neighbours = {}
        for result in results:
            for session, when, time, content in result.rows:
                if time is not None:
                    found[(session, when)] = (time, content)
        return found

    def _contexts(
        self, org_id: str, memories: Sequence[MemoryRecord], known: KnownNeighbours | None = None
    ) -> Op[list[str]]:
        """For each memory, the content of the one before it in its session (by time, then
        insertion): stored, or earlier in the batch. A reply is found by the words of the
        question it answers. Only that direction: lending the new words back would rewrite
        the neighbour's full-text entry on every write, for no measurable recall on LoCoMo.

        Stored neighbours take one lookup per session (before its latest time in the batch:
        ``known`` when the caller looked them up already), and one more per memory only
        where a stored memory lies between the session's memories in the batch (a backfill).
        """
        if known is None:
            spans = session_spans(memories)
            latest = yield from self._before(org_id, latest_probes(spans))
        else:
            spans, latest = known

        def stored(m: MemoryRecord) -> tuple[int, str] | None:
            return latest.get((m.session_id, spans[m.session_id][1]))

        exact = yield from self._before(
            org_id,
            sorted(
                {
                    (m.session_id, m.time_ns)
                    for m in memories
                    if m.session_id and (hit := stored(m)) is not None and hit[0] > m.time_ns
                }
            ),
        )
        in_batch: dict[str, list[tuple[int, str]]] = {}
        contexts = []
        for m in memories:
            session = m.session_id
            if not session:
                contexts.append("")
                continue
            best = stored(m)
            if best is not None and best[0] > m.time_ns:
                best = exact.get((session, m.time_ns))
            for when, content in in_batch.get(session, ()):  # later in the batch = inserted later
                if when <= m.time_ns and (best is None or when >= best[0]):
                    best = (when, content)
            contexts.append(best[1] if best is not None else "")
            in_batch.setdefault(session, []).append((m.time_ns, m.content))
        return contexts

    def _before(self, org_id: str, probes: Sequence[tuple[str, int]]) -> Op[Neighbours]:
        """``_before_probes`` run, and read."""
        found = []
        for stmt in self._before_probes(org_id, probes):
            found.append((yield stmt))
        return self._before_found(found)

    def _insert(
        self,
        groups: Sequence[tuple[str, Sequence[MemoryRecord]]],
        retired: Sequence[Tally] = (),
        known: Mapping[str, KnownNeighbours] | None = None,
    ) -> Op[None]:
        """Write each org's memories (in order) to every index, one statement per table, move
        their agents' and sessions' last activity forward, and keep the agent tallies
        (``retired``: stored versions these memories superseded). ``known``: each org's
        stored neighbours, where the caller looked them up (``_contexts``)."""
        new: list[NewMemory] = []
        touched: dict[tuple[str, str, str], int] = {}
        for org_id, memories in groups:
            contexts = yield from self._contexts(org_id, memories, (known or {}).get(org_id))
            new.extend(NewMemory(org_id, m, c) for m, c in zip(memories, contexts, strict=True))
            for (kind, ref), when in latest_activity(memories).items():
                touched[(kind, org_id, ref)] = when
        if not new:
            return
        yield from self.write_memories(new)
        for table in ("agents", "sessions"):
            # sorted, so concurrent writers lock these rows in one order
            rows = [
                (when, org_id, ref, when)
                for (kind, org_id, ref), when in sorted(touched.items())
                if kind == table
            ]
            if rows:
                yield Stmt(
                    f"UPDATE {table} SET last_active_at = ? WHERE org_id = ? AND id = ?"
                    " AND (last_active_at IS NULL OR last_active_at < ?)",
                    rows,
                    many=True,
                )
        current = [t for org_id, memories in groups for t in memory_tallies(org_id, memories)]
        changes = tally([*current, *retired])
        if changes:
            yield self.add_tallies(changes)

    def _supersede(
        self, org_id: str, memories: Sequence[MemoryRecord], nows: Sequence[int]
    ) -> Op[tuple[list[MemoryRecord], list[Tally]]]:
        """Apply keyed memories in order: each replaces the current version of its key unless
        that one is newer (by time; a tie goes to the later write), and so becomes history.

        Marks the stored version it replaces and returns the memories to insert, with
        ``superseded_by`` set on those that are history already, and the tally rows of the
        stored versions that stopped being current. ``nows`` are the times of the writes, one
        per memory: when a version stops being current.
        """
        out = list(memories)
        retired: list[Tally] = []
        keyed = sorted({(m.agent_id, m.key) for m in memories if m.key})
        yield from self.locks([f"{org_id}|{agent_id}|{key}" for agent_id, key in keyed], KEY_LOCK)
        for agent_id, key in keyed:
            of_key = "org_id = ? AND agent_id = ? AND memory_key = ?"
            row = (
                yield Stmt(
                    "SELECT id, time, memory_type, event_type FROM memories"
                    f" WHERE {of_key} AND superseded_by IS NULL",
                    (org_id, agent_id, key),
                )
            ).one()
            # the current version: (id, time, its index in ``out`` or None when stored)
            current: tuple[str, int, int | None] | None = (row[0], row[1], None) if row else None
            for index, m in enumerate(out):
                if m.key != key or m.agent_id != agent_id:
                    continue
                now_ns = nows[index]
                if current is not None and m.time_ns < current[1]:  # a backfill: history at once
                    out[index] = replace(m, superseded_by=current[0], superseded_at_ns=now_ns)
                    continue
                if current is not None and current[2] is None:
                    yield Stmt(
                        f"UPDATE memories SET superseded_by = ?, superseded_at = ? WHERE {of_key}"
                        " AND id = ?",
                        (m.id, now_ns, org_id, agent_id, key, current[0]),
                    )
                    assert row is not None  # the stored current version
                    error = int(row[3] == "error")
                    retired.append((org_id, agent_id, row[2], hour_of(row[1]), -1, -error))
                elif current is not None and current[2] is not None:
                    earlier = out[current[2]]
                    out[current[2]] = replace(earlier, superseded_by=m.id, superseded_at_ns=now_ns)
                current = (m.id, m.time_ns, index)
        return out, retired

    def _insert_batches(self, batches: Sequence[MemoryBatch]) -> Op[list[list[bool]]]:
        """Insert several calls' memories in one go, with the outcome of running them one
        after another: which memories of each batch were stored (False: a duplicate).

        One dedup query and one statement per table for all of them; a key written twice
        keeps the later write (by the time rule of ``_supersede``). Orgs never meet: dedup,
        keys and neighbours are looked up per org.
        """
        by_org: dict[str, list[int]] = {}
        for index, batch in enumerate(batches):
            by_org.setdefault(batch.org_id, []).append(index)
        # Every dedup lock before any key lock, each kind sorted, so concurrent writers
        # take them in one order and never deadlock.
        dedup_keys = {
            f"{b.org_id}|{m.dedup_key}"
            for b in batches
            if b.dedup_window_ns is not None
            for m in b.memories
            if m.dedup_key
        }
        orgs = sorted(by_org)
        # One step for the reads no answer is needed before: the dedup locks, then each
        # org's dedup lookups (after the locks: they see what a writer that held one
        # committed) and the stored neighbour of each session written to (a duplicate's
        # too, which can cost a second lookup for a memory before it in the batch).
        spans = {
            o: session_spans([m for i in by_org[o] for m in batches[i].memories]) for o in orgs
        }
        locks = self.lock_statements(sorted(dedup_keys), DEDUP_LOCK)
        probes = {o: self._dedup_probes(o, [batches[i] for i in by_org[o]]) for o in orgs}
        before = {o: self._before_probes(o, latest_probes(spans[o])) for o in orgs}
        step = [
            *locks,
            *(s for o in orgs for s in probes[o]),
            *(s for o in orgs for s in before[o]),
        ]
        parts = iter((yield together(step)).parts if step else ())
        for _ in locks:
            next(parts)
        stored_keys = {o: self._dedup_found([next(parts) for _ in probes[o]]) for o in orgs}
        known = {o: (spans[o], self._before_found([next(parts) for _ in before[o]])) for o in orgs}
        fresh: list[list[bool]] = [[] for _ in batches]
        groups: list[tuple[str, Sequence[MemoryRecord]]] = []
        retired: list[Tally] = []
        for org_id in orgs:
            mine = [batches[i] for i in by_org[org_id]]
            stored = stored_keys[org_id]
            kept: list[MemoryRecord] = []
            nows: list[int] = []
            for index, batch, flags in zip(
                by_org[org_id], mine, fresh_memories(mine, stored), strict=True
            ):
                fresh[index] = flags
                kept.extend(m for m, ok in zip(batch.memories, flags, strict=True) if ok)
                nows.extend(batch.now_ns for ok in flags if ok)
            versions, replaced = yield from self._supersede(org_id, kept, nows)
            groups.append((org_id, versions))
            retired.extend(replaced)
        yield from self._insert(groups, retired, known)
        return fresh

    def _erase(self, condition: str, params: Sequence[Any]) -> Op[int]:
        """Erase memories from every index; where a key's current version goes, the newest
        remaining version becomes current again."""
        keys = (
            yield Stmt(
                "SELECT DISTINCT m.org_id, m.agent_id, m.memory_key FROM memories m"
                f" WHERE {condition} AND m.memory_key IS NOT NULL AND m.superseded_by IS NULL",
                params,
            )
        ).rows
        keys.sort()
        for org_id, agent_id, key in keys:
            yield from self.lock(f"{org_id}|{agent_id}|{key}", KEY_LOCK)
        gone = yield Stmt(
            f"SELECT m.org_id, m.agent_id, m.memory_type, m.time / {HOUR_NS}, count(*),"
            " count(*) FILTER (WHERE m.event_type = 'error') FROM memories m"
            f" WHERE {condition} AND m.superseded_by IS NULL GROUP BY 1, 2, 3, 4",
            params,
        )
        erased = yield from self.erase_where(condition, params)
        changes: list[Tally] = [(*row[:4], -row[4], -row[5]) for row in gone.rows]
        of_key = "org_id = ? AND agent_id = ? AND memory_key = ?"
        for org_id, agent_id, key in keys:
            promoted = yield Stmt(
                f"UPDATE memories SET superseded_by = NULL, superseded_at = NULL WHERE {of_key}"
                f" AND rid = (SELECT rid FROM memories WHERE {of_key} ORDER BY time DESC, rid DESC LIMIT 1)"
                f" AND NOT EXISTS (SELECT 1 FROM memories WHERE {of_key} AND superseded_by IS NULL)"
                " RETURNING memory_type, time, event_type",
                (org_id, agent_id, key) * 3,
            )
            for memory_type, when, event in promoted.rows:
                changes.append(
                    (org_id, agent_id, memory_type, hour_of(when), 1, int(event == "error"))
                )
        update = tally(changes)
        if update:
            yield self.add_tallies(update)
        return erased

    async def insert_memories(
        self,
        org_id: str,
        memories: Sequence[MemoryRecord],
        dedup_window_ns: int | None,
        now_ns: int,
    ) -> list[bool]:
        """Insert memories atomically, skipping duplicates within the window."""
        batch = MemoryBatch(org_id, tuple(memories), dedup_window_ns, now_ns)
        return await self._insert_batch(batch)

    async def _insert_batch(self, batch: MemoryBatch) -> list[bool]:
        """Run one call of ``insert_memories``; a backend may coalesce concurrent calls."""
        return (await self._write(self._insert_batches([batch])))[0]

    async def get_memory(self, org_id: str, ref: str) -> MemoryRecord | None:
        """A memory by id, else the newest one with that dedup key."""
        select = f"SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.org_id = ?"
        when = memory_id_time(ref) if self.probe_id_time else None

        def op() -> Op[MemoryRecord | None]:
            row = None
            if when is not None:  # one partition, one index probe
                row = (
                    yield Stmt(f"{select} AND m.time = ? AND m.id = ?", (org_id, when, ref))
                ).one()
            row = (
                row
                or (yield Stmt(f"{select} AND m.id = ?", (org_id, ref))).one()
                or (
                    yield Stmt(
                        f"{select} AND m.dedup_key = ? AND m.superseded_by IS NULL"
                        " ORDER BY m.time DESC LIMIT 1",
                        (org_id, ref),
                    )
                ).one()
            )
            return self._memory(row) if row else None

        return await self._read(op(), brief=True)

    def _scan(self, org_id: str, flt: MemoryFilter) -> Op[tuple[str, list[Any], str]]:
        """``FROM … WHERE …`` of a filter, its parameters, and the alias whose time and rid
        order it: ``memories`` itself, or a backend's faster source (``time_ordered_source``)."""
        ordered = yield from self.time_ordered_source(org_id, flt)
        source, params, order, rest = ordered or ("memories m", [], "m", flt)
        where, where_params = self.memory_filter(org_id, rest)
        return f"{source} WHERE {where}", [*params, *where_params], order

    async def query_memories(self, org_id: str, flt: MemoryFilter) -> list[MemoryRecord]:
        """Memories matching a filter, by time; with ``query``, ranked by relevance."""
        if flt.query:
            where, params = self.memory_filter(org_id, flt)
            rows = await self._read(self.ranked(org_id, flt, where, params))
            sign = self.score_sign
            return [replace(self._memory(r[:-1]), score=sign * float(r[-1])) for r in rows.rows]
        direction = "ASC" if flt.ascending else "DESC"

        def op() -> Op[list[tuple[Any, ...]]]:
            recent = yield from self.recent_page(org_id, flt)
            if recent is not None:
                return recent
            scan, params, order = yield from self._scan(org_id, flt)
            result = yield Stmt(
                f"SELECT {MEMORY_COLUMNS} FROM {scan}"
                f" ORDER BY {order}.time {direction}, {order}.rid {direction} LIMIT ? OFFSET ?",
                [*params, flt.limit, flt.offset],
            )
            return result.rows

        return [self._memory(r) for r in await self._read(op(), brief=page_bounded(flt))]

    async def count_memories(self, org_id: str, flt: MemoryFilter) -> int:
        """How many memories match the filter."""

        def op() -> Op[int]:
            scan, params, _ = yield from self._scan(org_id, flt)
            return int((yield Stmt(f"SELECT count(*) FROM {scan}", params)).rows[0][0])

        return await self._read(op())

    async def count_by_day(
        self, org_id: str, flt: MemoryFilter, start_ns: int, days: int
    ) -> list[int]:
        """How many memories match the filter on each of ``days`` days of ``DAY_NS`` from
        ``start_ns`` (the filter's own window is replaced): one statement of a count per
        day, each an index range like ``count_memories``'s."""

        def op() -> Op[list[int]]:
            counts, values = [], []
            for n in range(days):
                since = start_ns + n * DAY_NS
                day = replace(flt, since_ns=since - 1, until_ns=since + DAY_NS)
                scan, params, _ = yield from self._scan(org_id, day)
                counts.append(f"(SELECT count(*) FROM {scan})")
                values.extend(params)
            found = yield Stmt(f"SELECT {', '.join(counts)}", values)
            return [int(count) for count in found.rows[0]]

        return await self._read(op())

    async def delete_memory(self, org_id: str, memory_id: str) -> bool:
        """Erase one memory from every index."""
        return await self._write(self._erase("m.org_id = ? AND m.id = ?", (org_id, memory_id))) > 0

    async def delete_memories(self, org_id: str, flt: MemoryFilter) -> int:
        """Erase every memory matching the filter (limit and offset ignored)."""
        return await self._write(self._erase(*self.memory_filter(org_id, flt)))

    async def purge_expired(self, now_ns: int, retention_floors: dict[str, int]) -> int:
        """Erase memories past their expiry, and those older than their org's retention."""

        def op() -> Op[int]:
            condition = "m.expires_at IS NOT NULL AND m.expires_at <= ?"
            erased = yield from self._erase(condition, (now_ns,))
            for org_id, floor in retention_floors.items():
                erased += yield from self._erase("m.org_id = ? AND m.time <= ?", (org_id, floor))
            return erased

        return await self._write(op())

    # embeddings

    async def pending_embeddings(self, org_id: str, limit: int) -> list[tuple[int, str, str]]:
        """(rid, id, content) of memories without an embedding (a partial index)."""
        rows = await self._rows(
            "SELECT rid, id, content FROM memories WHERE org_id = ? AND embedding IS NULL"
            " ORDER BY rid LIMIT ?",
            (org_id, limit),
        )
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def put_embeddings(self, org_id: str, rows: Sequence[tuple[int, str, bytes]]) -> None:
        """Store embeddings by rid and id."""
        params = [(vector, rid, org_id, memory_id) for rid, memory_id, vector in rows]
        sql = "UPDATE memories SET embedding = ? WHERE rid = ? AND org_id = ? AND id = ?"
        await self._write(run(Stmt(sql, params, many=True)))

    async def embedded_memories(
        self, org_id: str, flt: MemoryFilter
    ) -> list[tuple[MemoryRecord, bytes]]:
        """Memories matching the filter that have an embedding, newest first."""
        where, params = self.memory_filter(org_id, replace(flt, query=()))
        rows = await self._rows(
            f"SELECT {MEMORY_COLUMNS}, m.embedding FROM memories m"
            f" WHERE {where} AND m.embedding IS NOT NULL ORDER BY m.time DESC LIMIT ?",
            [*params, flt.limit],
        )
        return [(self._memory(r[:-1]), bytes(r[-1])) for r in rows]

    # export and import

    async def export_memories(
        self, org_id: str, agent_id: str | None, after: tuple[int, int] | None, limit: int
    ) -> list[tuple[tuple[int, int], MemoryRecord]]:
        """A page of memories in (time, insertion) order after the ``after`` cursor."""
        where: list[str] = ["m.org_id = ?"]
        params: list[Any] = [org_id]
        if agent_id:
            where.append("m.agent_id = ?")
            params.append(agent_id)
        if after is not None:
            where.append("(m.time, m.rid) > (?, ?)")  # a row value: an index range, not a scan
            params.extend(after)
        rows = await self._rows(
            f"SELECT {MEMORY_COLUMNS}, m.rid FROM memories m WHERE {' AND '.join(where)}"
            " ORDER BY m.time, m.rid LIMIT ?",
            [*params, limit],
        )
        return [((r[12], r[-1]), self._memory(r[:-1])) for r in rows]

    async def import_memories(
        self, org_id: str, memories: Sequence[MemoryRecord], now_ns: int
    ) -> int:
        """Insert memories whose ids are not stored yet; how many were new."""

        def op() -> Op[int]:
            new: dict[str, MemoryRecord] = {}
            for m in memories:
                yield from self.lock(m.id, IMPORT_LOCK)
                sql = "SELECT 1 FROM memories WHERE org_id = ? AND id = ?"
                if m.id not in new and not (yield Stmt(sql, (org_id, m.id))).rows:
                    new[m.id] = m
            history = [m for m in new.values() if m.superseded_by or not m.key]
            current = [m for m in new.values() if m.key and not m.superseded_by]
            current, retired = yield from self._supersede(org_id, current, [now_ns] * len(current))
            yield from self._insert([(org_id, [*history, *current])], retired)
            return len(new)

        return await self._write(op())

    async def import_agent(self, org_id: str, agent: AgentRecord) -> bool:
        """Insert an agent unless its id (or name) exists."""
        values = agent_values(replace(agent, org_id=org_id))
        sql = f"INSERT INTO agents ({AGENT_COLUMNS}) VALUES ({marks(8)}) ON CONFLICT DO NOTHING"
        return await self._changed(sql, values) > 0

    async def import_session(self, org_id: str, session: SessionRecord) -> bool:
        """Insert a session unless its id exists."""
        sql = f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({marks(9)}) ON CONFLICT DO NOTHING"

        def op() -> Op[bool]:
            if (yield Stmt(sql, session_values(org_id, session))).rowcount == 0:
                return False
            yield counted_sessions(org_id, session.agent_id, 1, int(session.status == "active"))
            return True

        return await self._write(op())

    # web console sign-ins (control)

    async def create_console_session(self, session: ConsoleSessionRecord) -> None:
        """Store a console session."""
        sql = (
            "INSERT INTO console_sessions (token_digest, org_id, key_digest, csrf_token,"
            " created_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?)"
        )
        params = (
            session.token_digest,
            session.org_id,
            session.key_digest,
            session.csrf_token,
            session.created_at_ns,
            session.last_seen_at_ns,
        )
        await self._write(guarded(Stmt(sql, params), duplicate="console session already exists"))

    async def get_console_session(self, token_digest: str) -> ConsoleSessionRecord | None:
        """The console session stored under this token digest."""
        row = await self._one(
            "SELECT token_digest, org_id, key_digest, csrf_token, created_at, last_seen_at"
            " FROM console_sessions WHERE token_digest = ?",
            (token_digest,),
        )
        return ConsoleSessionRecord(*row) if row else None

    async def touch_console_session(self, token_digest: str, now_ns: int) -> bool:
        """Move a console session's last activity forward."""
        sql = "UPDATE console_sessions SET last_seen_at = ? WHERE token_digest = ?"
        return await self._changed(sql, (now_ns, token_digest)) > 0

    async def delete_console_session(self, token_digest: str) -> bool:
        """End a console session."""
        sql = "DELETE FROM console_sessions WHERE token_digest = ?"
        return await self._changed(sql, (token_digest,)) > 0

    async def purge_console_sessions(self, idle_before_ns: int) -> int:
        """Delete console sessions idle since before ``idle_before_ns``."""
        sql = "DELETE FROM console_sessions WHERE last_seen_at < ?"
        return await self._changed(sql, (idle_before_ns,))
