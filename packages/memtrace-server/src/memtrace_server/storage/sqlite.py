"""SQLite store: WAL, one writer thread that group-commits, a pool of reader threads.

Every write is a small function run by the writer inside a shared transaction; all
functions queued while a commit is in progress run in the next one, so concurrent
requests share one commit (and one fsync). A caller's future resolves only after
COMMIT returns, so an acknowledged write is on disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import orjson

from memtrace_server.core.records import (
    AgentRecord,
    AgentStatsRecord,
    ApiKeyRecord,
    MemoryFilter,
    MemoryRecord,
    OrgRecord,
    OrgStoreBinding,
    SessionRecord,
)
from memtrace_server.core.text import agent_scope, org_scope
from memtrace_server.storage.base import DuplicateName, StoreError, StoreFull
from memtrace_server.storage.sql import (
    AGENT_COLUMNS,
    KEY_COLUMNS,
    MEMORY_COLUMNS,
    ORG_COLUMNS,
    ORG_TABLES,
    SESSION_COLUMNS,
    Dialect,
    agent_from_row,
    dump_json,
    key_from_row,
    load_json,
    memory_filter_sql,
    memory_from_row,
    memory_values,
    merge_metadata,
    order_limit_sql,
    org_from_row,
    session_from_row,
    session_values,
)

T = TypeVar("T")
log = logging.getLogger("memtrace.storage")
WriteFn = Callable[[sqlite3.Connection], Any]

DAY_NS = 86_400 * 1_000_000_000
MAX_GROUP = 256
# BM25 weight of the neighbouring-memory column; LoCoMo dev recall is flat from 0.3 to 0.7.
CONTEXT_WEIGHT = 0.5


def _tags(value: str | None) -> tuple[str, ...]:
    tags = load_json(value)
    return tuple(tags) if tags else ()


def _memory(row: tuple[Any, ...]) -> MemoryRecord:
    return memory_from_row(row, _tags)


def _tag_subqueries(org_id: str, flt: MemoryFilter) -> tuple[list[str], list[Any]]:
    bounds, bound_params = "", []
    if flt.since_ns is not None:
        bounds += " AND t.time > ?"
        bound_params.append(flt.since_ns)
    if flt.until_ns is not None:
        bounds += " AND t.time < ?"
        bound_params.append(flt.until_ns)
    clauses, params = [], []
    for tag in flt.tags:
        clauses.append(
            f"m.rid IN (SELECT t.rid FROM memory_tags t WHERE t.org_id = ? AND t.tag = ?{bounds})"
        )
        params.extend([org_id, tag, *bound_params])
    return clauses, params


SQLITE = Dialect(placeholder="?", substring_function="instr", tags_clause=_tag_subqueries)


class SQLiteStore:
    """The embedded default store, in one SQLite file."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", readers: int = 4) -> None:
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        if self.synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"invalid synchronous setting: {synchronous}")
        self._reader_count = readers
        self._queue: queue.SimpleQueue[tuple[WriteFn, concurrent.futures.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._writer: threading.Thread | None = None
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()

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

    def _open_sync(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 8192")
        _migrate(conn)
        return conn

    async def open(self) -> None:
        """Create the file if needed, apply migrations and start the writer and readers."""
        try:
            conn = await asyncio.to_thread(self._open_sync)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        self._writer = threading.Thread(
            target=self._write_loop, args=(conn,), name="memtrace-sqlite-writer", daemon=True
        )
        self._writer.start()
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._reader_count, thread_name_prefix="memtrace-sqlite-reader"
        )

    async def close(self) -> None:
        """Drain queued writes, stop the threads and close every connection."""
        if self._writer is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # plumbing

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                break
            group = [item]
            while len(group) < MAX_GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                group.append(nxt)
            self._run_group(
                conn, [(fn, fut) for fn, fut in group if fut.set_running_or_notify_cancel()]
            )

    def _run_group(
        self, conn: sqlite3.Connection, group: list[tuple[WriteFn, concurrent.futures.Future[Any]]]
    ) -> None:
        if not group:
            return
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, _ in group:
                conn.execute("SAVEPOINT op")
                try:
                    outcomes.append((True, fn(conn)))
                    conn.execute("RELEASE op")
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    if isinstance(exc, sqlite3.Error):
                        full = "full" in str(exc).lower()
                        exc = (StoreFull if full else StoreError)(f"write failed: {exc}")
                    outcomes.append((False, exc))
            conn.execute("COMMIT")
        except Exception as exc:
            log.error("sqlite write transaction failed: %s", exc)
            failure: StoreError = (
                StoreFull(f"write failed: {exc}")
                if "full" in str(exc).lower()
                else StoreError(f"write failed: {exc}")
            )
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            for _, fut in group:
                fut.set_exception(failure)
            return
        for (_, fut), (ok, value) in zip(group, outcomes, strict=True):
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StoreError("store is not open")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((fn, fut))
        return await asyncio.wrap_future(fut)

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
        return conn

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._reader_conn())
        except sqlite3.Error as exc:
            raise StoreError(f"read failed: {exc}") from exc

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn)

    async def ping(self) -> None:
        """Run a trivial query through a reader."""
        await self._read(lambda c: c.execute("SELECT 1 FROM orgs LIMIT 1").fetchall())

    # organisations and keys

    async def create_org(self, org: OrgRecord) -> None:
        """Insert an org."""

        def op(c: sqlite3.Connection) -> None:
            try:
                c.execute(
                    "INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)",
                    (org.id, org.name, org.created_at_ns),
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateName(f"org '{org.id}' already exists") from exc

        await self._write(op)

    async def list_orgs(self) -> list[OrgRecord]:
        """All orgs, oldest first."""
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {ORG_COLUMNS} FROM orgs ORDER BY created_at, id"
            ).fetchall()
        )
        return [org_from_row(row) for row in rows]

    async def get_org(self, org_id: str) -> OrgRecord | None:
        """One org."""
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {ORG_COLUMNS} FROM orgs WHERE id = ?", (org_id,)
            ).fetchone()
        )
        return org_from_row(row) if row else None

    async def org_usage(self, org_id: str) -> dict[str, int]:
        """Counts of what an org owns."""

        def op(c: sqlite3.Connection) -> dict[str, int]:
            return {
                table: c.execute(
                    f"SELECT count(*) FROM {table} WHERE org_id = ?", (org_id,)
                ).fetchone()[0]
                for table in ORG_TABLES
            }

        return await self._read(op)

    async def delete_org(self, org_id: str) -> bool:
        """Delete an org with its keys, agents, sessions and memories."""

        def op(c: sqlite3.Connection) -> bool:
            for table in (
                "memory_tags",
                "memories",
                "sessions",
                "agents",
                "api_keys",
                "org_stores",
            ):
                c.execute(f"DELETE FROM {table} WHERE org_id = ?", (org_id,))
            return c.execute("DELETE FROM orgs WHERE id = ?", (org_id,)).rowcount > 0

        return await self._write(op)

    async def create_key(
        self, org_id: str, name: str, digest: str, prefix: str, permissions: str, now_ns: int
    ) -> ApiKeyRecord:
        """Store a key digest."""

        def op(c: sqlite3.Connection) -> ApiKeyRecord:
            try:
                cur = c.execute(
                    "INSERT INTO api_keys (org_id, name, key_digest, key_prefix, permissions, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (org_id, name, digest, prefix, permissions, now_ns),
                )
            except sqlite3.IntegrityError as exc:
                if "FOREIGN KEY" in str(exc):
                    raise LookupError(f"org '{org_id}' not found") from exc
                raise DuplicateName(f"key with name '{name}' already exists") from exc
            row = c.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?", (cur.lastrowid,)
            ).fetchone()
            return key_from_row(row)

        return await self._write(op)

    async def list_keys(self, org_id: str) -> list[ApiKeyRecord]:
        """Keys of one org."""
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = ? ORDER BY id", (org_id,)
            ).fetchall()
        )
        return [key_from_row(r) for r in rows]

    async def revoke_key(self, key_id: int, org_id: str | None = None) -> bool:
        """Delete a key."""

        def op(c: sqlite3.Connection) -> bool:
            if org_id is None:
                return c.execute("DELETE FROM api_keys WHERE id = ?", (key_id,)).rowcount > 0
            return (
                c.execute(
                    "DELETE FROM api_keys WHERE id = ? AND org_id = ?", (key_id, org_id)
                ).rowcount
                > 0
            )

        return await self._write(op)

    async def find_key(self, digest: str) -> ApiKeyRecord | None:
        """The key stored under this digest."""
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_digest = ?", (digest,)
            ).fetchone()
        )
        return key_from_row(row) if row else None

    async def set_org_store(self, binding: OrgStoreBinding) -> None:
        """Bind an org to its own store."""

        def op(c: sqlite3.Connection) -> None:
            try:
                c.execute(
                    "INSERT INTO org_stores (org_id, url_cipher, url_nonce, updated_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (org_id) DO UPDATE SET url_cipher = excluded.url_cipher,"
                    " url_nonce = excluded.url_nonce, updated_at = excluded.updated_at",
                    (binding.org_id, binding.url_cipher, binding.url_nonce, binding.updated_at_ns),
                )
            except sqlite3.IntegrityError as exc:
                raise LookupError(f"org '{binding.org_id}' not found") from exc

        await self._write(op)

    async def list_org_stores(self) -> list[OrgStoreBinding]:
        """Every binding."""
        rows = await self._read(
            lambda c: c.execute(
                "SELECT org_id, url_cipher, url_nonce, updated_at FROM org_stores"
            ).fetchall()
        )
        return [OrgStoreBinding(r[0], bytes(r[1]), bytes(r[2]), r[3]) for r in rows]

    async def delete_org_store(self, org_id: str) -> bool:
        """Remove a binding."""
        return await self._write(
            lambda c: c.execute("DELETE FROM org_stores WHERE org_id = ?", (org_id,)).rowcount > 0
        )

    # agents and sessions

    @staticmethod
    def _find_agent(c: sqlite3.Connection, org_id: str, ref: str) -> AgentRecord | None:
        row = (
            c.execute(
                f"SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = ? AND id = ?", (org_id, ref)
            ).fetchone()
            or c.execute(
                f"SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = ? AND name = ?", (org_id, ref)
            ).fetchone()
        )
        return agent_from_row(row) if row else None

    @staticmethod
    def _insert_agent(c: sqlite3.Connection, a: AgentRecord) -> None:
        c.execute(
            f"INSERT INTO agents ({AGENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                a.org_id,
                a.id,
                a.name,
                a.description,
                dump_json(a.config) or "{}",
                int(a.implicit),
                a.created_at_ns,
                a.last_active_at_ns,
            ),
        )

    async def register_agent(self, org_id: str, agent: AgentRecord) -> AgentRecord:
        """Insert an agent or adopt the implicit one of the same name."""

        def op(c: sqlite3.Connection) -> AgentRecord:
            row = c.execute(
                f"SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = ? AND name = ?",
                (org_id, agent.name),
            ).fetchone()
            if row is None:
                try:
                    self._insert_agent(c, agent)
                except sqlite3.IntegrityError as exc:
                    raise DuplicateName(agent.name) from exc
                return agent
            existing = agent_from_row(row)
            if not existing.implicit:
                raise DuplicateName(agent.name)
            c.execute(
                "UPDATE agents SET description = ?, config_json = ?, implicit = 0"
                " WHERE org_id = ? AND id = ?",
                (agent.description, dump_json(agent.config) or "{}", org_id, existing.id),
            )
            found = self._find_agent(c, org_id, existing.id)
            assert found is not None
            return found

        return await self._write(op)

    async def ensure_agent(self, org_id: str, ref: str, implicit: AgentRecord) -> AgentRecord:
        """Resolve an agent by id or name, registering ``implicit`` when absent."""

        def op(c: sqlite3.Connection) -> AgentRecord:
            found = self._find_agent(c, org_id, ref)
            if found is not None:
                return found
            self._insert_agent(c, implicit)
            return implicit

        found = await self.get_agent(org_id, ref)
        return found if found is not None else await self._write(op)

    async def get_agent(self, org_id: str, ref: str) -> AgentRecord | None:
        """The agent with this id, else this name."""
        return await self._read(lambda c: self._find_agent(c, org_id, ref))

    async def list_agents(self, org_id: str) -> list[AgentRecord]:
        """Agents of an org, newest first."""
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = ? ORDER BY created_at DESC, id",
                (org_id,),
            ).fetchall()
        )
        return [agent_from_row(r) for r in rows]

    async def delete_agent(self, org_id: str, agent_id: str) -> bool | int:
        """Delete an agent that has no sessions."""

        def op(c: sqlite3.Connection) -> bool | int:
            sessions = c.execute(
                "SELECT count(*) FROM sessions WHERE org_id = ? AND agent_id = ?",
                (org_id, agent_id),
            ).fetchone()[0]
            if sessions:
                return int(sessions)
            return (
                c.execute(
                    "DELETE FROM agents WHERE org_id = ? AND id = ?", (org_id, agent_id)
                ).rowcount
                > 0
            )

        return await self._write(op)

    async def agent_stats(self, org_id: str, agent_id: str, now_ns: int) -> AgentStatsRecord:
        """Counts for one agent id."""

        def op(c: sqlite3.Connection) -> AgentStatsRecord:
            types = dict(
                c.execute(
                    "SELECT memory_type, count(*) FROM memories WHERE org_id = ? AND agent_id = ?"
                    " GROUP BY memory_type",
                    (org_id, agent_id),
                ).fetchall()
            )
            recent, errors = c.execute(
                "SELECT count(*), coalesce(sum(event_type = 'error'), 0) FROM memories"
                " WHERE org_id = ? AND agent_id = ? AND time > ?",
                (org_id, agent_id, now_ns - DAY_NS),
            ).fetchone()
            last = c.execute(
                "SELECT max(time) FROM memories WHERE org_id = ? AND agent_id = ?",
                (org_id, agent_id),
            ).fetchone()[0]
            sessions, active = c.execute(
                "SELECT count(*), coalesce(sum(status = 'active'), 0) FROM sessions"
                " WHERE org_id = ? AND agent_id = ?",
                (org_id, agent_id),
            ).fetchone()
            return AgentStatsRecord(
                memory_count=sum(types.values()),
                memories_24h=recent,
                errors_24h=errors,
                session_count=sessions,
                active_sessions=active,
                last_active_at_ns=last,
                memory_types=types,
            )

        return await self._read(op)

    async def create_session(self, org_id: str, session: SessionRecord) -> None:
        """Insert a session."""

        def op(c: sqlite3.Connection) -> None:
            try:
                c.execute(
                    f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    session_values(org_id, session),
                )
            except sqlite3.IntegrityError as exc:
                raise LookupError(f"agent '{session.agent_id}' not found") from exc

        await self._write(op)

    @staticmethod
    def _find_session(c: sqlite3.Connection, org_id: str, session_id: str) -> SessionRecord | None:
        row = c.execute(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE org_id = ? AND id = ?",
            (org_id, session_id),
        ).fetchone()
        return session_from_row(row) if row else None

    async def get_session(self, org_id: str, session_id: str) -> SessionRecord | None:
        """One session."""
        return await self._read(lambda c: self._find_session(c, org_id, session_id))

    async def list_sessions(self, org_id: str, agent_id: str | None) -> list[SessionRecord]:
        """Sessions, newest first."""
        if agent_id:
            sql = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE org_id = ? AND agent_id = ?"
            params: tuple[str, ...] = (org_id, agent_id)
        else:
            sql = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE org_id = ?"
            params = (org_id,)
        rows = await self._read(
            lambda c: c.execute(sql + " ORDER BY created_at DESC, id", params).fetchall()
        )
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

        def op(c: sqlite3.Connection) -> SessionRecord | None:
            current = self._find_session(c, org_id, session_id)
            if current is None:
                return None
            metadata = merge_metadata(current.metadata, metadata_patch)
            new_status = status or current.status
            closed_at = current.closed_at_ns
            if status == "closed":
                closed_at = now_ns
            elif status == "active":
                closed_at = None
            c.execute(
                "UPDATE sessions SET status = ?, metadata_json = ?, updated_at = ?, closed_at = ?"
                " WHERE org_id = ? AND id = ?",
                (new_status, dump_json(metadata) or "{}", now_ns, closed_at, org_id, session_id),
            )
            return self._find_session(c, org_id, session_id)

        return await self._write(op)

    # memories

    async def insert_memories(
        self, org_id: str, memories: Sequence[MemoryRecord], dedup_window_ns: int | None
    ) -> list[bool]:
        """Insert memories atomically, skipping duplicates within the window."""

        def op(c: sqlite3.Connection) -> list[bool]:
            live = _live_dedup_times(c, org_id, memories, dedup_window_ns)
            stored: list[bool] = []
            for m in memories:
                if dedup_window_ns is not None and m.dedup_key:
                    times = live.setdefault(m.dedup_key, [])
                    if any(abs(t - m.time_ns) < dedup_window_ns for t in times):
                        stored.append(False)
                        continue
                    times.append(m.time_ns)  # later items of the same batch see this one
                stored.append(True)
            kept = [m for m, ok in zip(memories, stored, strict=True) if ok]
            _insert_many(c, org_id, kept)
            _touch(c, org_id, kept)
            return stored

        return await self._write(op)

    async def get_memory(self, org_id: str, ref: str) -> MemoryRecord | None:
        """A memory by id, else the newest one with that dedup key."""

        def op(c: sqlite3.Connection) -> MemoryRecord | None:
            row = (
                c.execute(
                    f"SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.id = ? AND m.org_id = ?",
                    (ref, org_id),
                ).fetchone()
                or c.execute(
                    f"SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.org_id = ? AND m.dedup_key = ?"
                    " ORDER BY m.time DESC LIMIT 1",
                    (org_id, ref),
                ).fetchone()
            )
            return _memory(row) if row else None

        return await self._read(op)

    async def query_memories(self, org_id: str, flt: MemoryFilter) -> list[MemoryRecord]:
        """Memories matching a filter; with ``query``, ranked by BM25 (score = -bm25)."""
        where, params = memory_filter_sql(org_id, flt, SQLITE)
        if flt.query:
            scope = (
                agent_scope(org_id, flt.agent_id) if flt.agent_id is not None else org_scope(org_id)
            )
            terms = " OR ".join('"' + t.replace('"', '""') + '"' for t in flt.query)
            sql = (
                f"SELECT {MEMORY_COLUMNS}, bm25(memories_fts, 0.0, 1.0, 0.4, {CONTEXT_WEIGHT}) AS rank"
                " FROM memories_fts JOIN memories m ON m.rid = memories_fts.rowid"
                f" WHERE memories_fts MATCH ? AND {where}"
                " ORDER BY rank, m.time DESC LIMIT ? OFFSET ?"
            )
            match = f'scope:"{scope}" AND {{content labels context}}:({terms})'
            args = [match, *params, flt.limit, flt.offset]
            rows = await self._read(lambda c: c.execute(sql, args).fetchall())
            return [replace(_memory(r[:-1]), score=-float(r[-1])) for r in rows]
        tail, tail_params = order_limit_sql(flt, "?")
        sql = f"SELECT {MEMORY_COLUMNS} FROM memories m WHERE {where}{tail}"
        rows = await self._read(lambda c: c.execute(sql, [*params, *tail_params]).fetchall())
        return [_memory(r) for r in rows]

    # embeddings

    async def pending_embeddings(
        self, org_id: str, after_rid: int, limit: int
    ) -> list[tuple[int, str]]:
        """(rid, content) of memories after ``after_rid`` without an embedding."""
        sql = (
            "SELECT rid, content FROM memories WHERE rid > ? AND org_id = ?"
            " AND embedding IS NULL ORDER BY rid LIMIT ?"
        )
        rows = await self._read(lambda c: c.execute(sql, (after_rid, org_id, limit)).fetchall())
        return [(int(r[0]), str(r[1])) for r in rows]

    async def put_embeddings(self, org_id: str, rows: Sequence[tuple[int, bytes]]) -> None:
        """Store embeddings by rid."""
        params = [(vector, rid, org_id) for rid, vector in rows]
        await self._write(
            lambda c: c.executemany(
                "UPDATE memories SET embedding = ? WHERE rid = ? AND org_id = ?", params
            )
        )

    async def embedded_memories(
        self, org_id: str, flt: MemoryFilter
    ) -> list[tuple[MemoryRecord, bytes]]:
        """Memories matching the filter that have an embedding, newest first."""
        where, params = memory_filter_sql(org_id, replace(flt, query=()), SQLITE)
        sql = (
            f"SELECT {MEMORY_COLUMNS}, m.embedding FROM memories m"
            f" WHERE {where} AND m.embedding IS NOT NULL ORDER BY m.time DESC LIMIT ?"
        )
        rows = await self._read(lambda c: c.execute(sql, [*params, flt.limit]).fetchall())
        return [(_memory(r[:-1]), bytes(r[-1])) for r in rows]

    # lifecycle

    async def set_org_retention(self, org_id: str, days: int | None) -> bool:
        """Set or clear an org's retention in days."""
        return await self._write(
            lambda c: (
                c.execute(
                    "UPDATE orgs SET retention_days = ? WHERE id = ?", (days, org_id)
                ).rowcount
                > 0
            )
        )

    async def delete_memory(self, org_id: str, memory_id: str) -> bool:
        """Erase one memory and its tag rows."""

        def op(c: sqlite3.Connection) -> bool:
            return _erase_where(c, "id = ? AND org_id = ?", (memory_id, org_id)) > 0

        return await self._write(op)

    async def delete_memories(self, org_id: str, flt: MemoryFilter) -> int:
        """Erase every memory matching the filter (limit and offset ignored)."""
        where, params = memory_filter_sql(org_id, flt, SQLITE)
        chosen = f"SELECT m.rid FROM memories m WHERE {where}"

        def op(c: sqlite3.Connection) -> int:
            # The filter may read memory_tags, so collect the rows before deleting anything.
            return _erase_rids(c, [(row[0],) for row in c.execute(chosen, params)])

        return await self._write(op)

    async def count_memories(self, org_id: str, flt: MemoryFilter) -> int:
        """How many memories match the filter."""
        where, params = memory_filter_sql(org_id, flt, SQLITE)
        row = await self._read(
            lambda c: c.execute(f"SELECT count(*) FROM memories m WHERE {where}", params).fetchone()
        )
        return int(row[0])

    async def delete_session(self, org_id: str, session_id: str, cascade: bool) -> bool:
        """Delete a session (and, with ``cascade``, the memories that carry its id)."""

        def op(c: sqlite3.Connection) -> bool:
            if (
                c.execute(
                    "DELETE FROM sessions WHERE org_id = ? AND id = ?", (org_id, session_id)
                ).rowcount
                == 0
            ):
                return False
            if cascade:
                _erase_where(c, "org_id = ? AND session_id = ?", (org_id, session_id))
            return True

        return await self._write(op)

    async def erase_agent(self, org_id: str, agent: AgentRecord) -> None:
        """Delete an agent, its sessions and its memories (under its id or its name)."""

        def op(c: sqlite3.Connection) -> None:
            _erase_where(c, "org_id = ? AND agent_id IN (?, ?)", (org_id, agent.id, agent.name))
            c.execute("DELETE FROM sessions WHERE org_id = ? AND agent_id = ?", (org_id, agent.id))
            c.execute("DELETE FROM agents WHERE org_id = ? AND id = ?", (org_id, agent.id))

        await self._write(op)

    async def update_agent(
        self,
        org_id: str,
        agent_id: str,
        description: str | None,
        config_patch: dict[str, Any] | None,
    ) -> AgentRecord | None:
        """Change an agent's description and merge its config."""

        def op(c: sqlite3.Connection) -> AgentRecord | None:
            current = self._find_agent(c, org_id, agent_id)
            if current is None or current.id != agent_id:
                return None
            c.execute(
                "UPDATE agents SET description = ?, config_json = ? WHERE org_id = ? AND id = ?",
                (
                    current.description if description is None else description,
                    dump_json(merge_metadata(current.config, config_patch)) or "{}",
                    org_id,
                    agent_id,
                ),
            )
            return self._find_agent(c, org_id, agent_id)

        return await self._write(op)

    async def purge_expired(self, now_ns: int, retention_floors: dict[str, int]) -> int:
        """Erase memories past their expiry, and those older than their org's retention."""

        def op(c: sqlite3.Connection) -> int:
            erased = _erase_where(c, "expires_at IS NOT NULL AND expires_at <= ?", (now_ns,))
            for org_id, floor in retention_floors.items():
                erased += _erase_where(c, "org_id = ? AND time <= ?", (org_id, floor))
            return erased

        return await self._write(op)

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
        sql = (
            f"SELECT {MEMORY_COLUMNS}, m.rid FROM memories m WHERE {' AND '.join(where)}"
            " ORDER BY m.time, m.rid LIMIT ?"
        )
        rows = await self._read(lambda c: c.execute(sql, [*params, limit]).fetchall())
        return [((r[12], r[-1]), _memory(r[:-1])) for r in rows]

    async def import_memories(self, org_id: str, memories: Sequence[MemoryRecord]) -> int:
        """Insert memories whose ids are not stored yet; how many were new."""

        def op(c: sqlite3.Connection) -> int:
            new = [
                m
                for m in memories
                if not c.execute("SELECT 1 FROM memories WHERE id = ?", (m.id,)).fetchone()
            ]
            _insert_many(c, org_id, new)
            return len(new)

        return await self._write(op)

    async def import_agent(self, org_id: str, agent: AgentRecord) -> bool:
        """Insert an agent unless its id (or name) exists."""

        def op(c: sqlite3.Connection) -> bool:
            try:
                self._insert_agent(c, agent)
            except sqlite3.IntegrityError:
                return False
            return True

        return await self._write(op)

    async def import_session(self, org_id: str, session: SessionRecord) -> bool:
        """Insert a session unless its id exists."""

        def op(c: sqlite3.Connection) -> bool:
            if self._find_session(c, org_id, session.id) is not None:
                return False
            c.execute(
                f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                session_values(org_id, session),
            )
            return True

        return await self._write(op)


def _insert_many(c: sqlite3.Connection, org_id: str, memories: Sequence[MemoryRecord]) -> None:
    """Insert memories with their tag and full-text rows, a statement per table.

    Runs on the writer (the only one), so the next rowids are known up front. Each memory's
    full-text ``context`` is the content of the memory before it in its session (by time,
    then insertion): a reply is found by the words of the question it answers. Only that
    direction — lending the new words back would rewrite the neighbour's full-text row on
    every write (a third of the write cost) for no measurable recall on LoCoMo.
    """
    if not memories:
        return
    base = c.execute("SELECT coalesce(max(rid), 0) FROM memories").fetchone()[0]
    stored_latest: dict[str, tuple[int, str] | None] = {}
    in_batch: dict[str, list[tuple[int, str]]] = {}
    rows: list[tuple[Any, ...]] = []
    tag_rows: list[tuple[Any, ...]] = []
    text_rows: list[tuple[Any, ...]] = []
    for n, m in enumerate(memories, start=1):
        rid = base + n
        context = ""
        if m.session_id:
            context = _previous_content(c, org_id, m, stored_latest, in_batch)
            in_batch.setdefault(m.session_id, []).append((m.time_ns, m.content))
        tags = orjson.dumps(list(m.tags)).decode() if m.tags else None
        rows.append((rid, *memory_values(org_id, m, tags)))
        tag_rows.extend((org_id, tag, m.time_ns, rid) for tag in m.tags)
        text_rows.append(
            (
                rid,
                f"{org_scope(org_id)} {agent_scope(org_id, m.agent_id)}",
                m.content,
                " ".join((*m.tags, m.event_type)),
                context,
            )
        )
    c.executemany(
        "INSERT INTO memories (rid, id, org_id, agent_id, session_id, memory_type, event_type,"
        " content, metadata_json, tags, dedup_key, importance, parent_id, time, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    c.executemany(
        "INSERT OR IGNORE INTO memory_tags (org_id, tag, time, rid) VALUES (?, ?, ?, ?)", tag_rows
    )
    c.executemany(
        "INSERT INTO memories_fts (rowid, scope, content, labels, context) VALUES (?, ?, ?, ?, ?)",
        text_rows,
    )


def _live_dedup_times(
    c: sqlite3.Connection,
    org_id: str,
    memories: Sequence[MemoryRecord],
    window_ns: int | None,
) -> dict[str, list[int]]:
    """Times of stored, unexpired memories sharing a dedup key with the batch, near its times."""
    keys = sorted({m.dedup_key for m in memories if m.dedup_key})
    if window_ns is None or not keys:
        return {}
    low = min(m.time_ns for m in memories) - window_ns
    high = max(m.time_ns for m in memories) + window_ns
    found: dict[str, list[int]] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for key, when in c.execute(
            f"SELECT dedup_key, time FROM memories WHERE org_id = ? AND dedup_key IN ({marks})"
            " AND time > ? AND time < ? AND (expires_at IS NULL OR expires_at > ?)",
            (org_id, *chunk, low, high, time.time_ns()),
        ):
            found.setdefault(key, []).append(when)
    return found


def _previous_content(
    c: sqlite3.Connection,
    org_id: str,
    m: MemoryRecord,
    stored_latest: dict[str, tuple[int, str] | None],
    in_batch: dict[str, list[tuple[int, str]]],
) -> str:
    """Content of the memory before ``m`` in its session: stored, or earlier in the batch."""
    session = m.session_id
    if session not in stored_latest:
        stored_latest[session] = c.execute(
            "SELECT time, content FROM memories WHERE org_id = ? AND session_id = ?"
            " ORDER BY time DESC, rid DESC LIMIT 1",
            (org_id, session),
        ).fetchone()
    stored = stored_latest[session]
    if stored is not None and stored[0] > m.time_ns:  # a backfill: look it up exactly
        stored = c.execute(
            "SELECT time, content FROM memories WHERE org_id = ? AND session_id = ? AND time <= ?"
            " ORDER BY time DESC, rid DESC LIMIT 1",
            (org_id, session, m.time_ns),
        ).fetchone()
    best = stored
    for when, content in in_batch.get(session, ()):  # later in the batch = later rowid
        if when <= m.time_ns and (best is None or when >= best[0]):
            best = (when, content)
    return best[1] if best is not None else ""


def _touch(c: sqlite3.Connection, org_id: str, memories: Sequence[MemoryRecord]) -> None:
    """Keep ``last_active_at`` of the agents and sessions the memories belong to."""
    latest: dict[tuple[str, str], int] = {}
    for m in memories:
        for kind, ref in (("agents", m.agent_id), ("sessions", m.session_id)):
            if ref:
                latest[(kind, ref)] = max(latest.get((kind, ref), 0), m.time_ns)
    for (kind, ref), when in latest.items():
        c.execute(
            f"UPDATE {kind} SET last_active_at = ? WHERE org_id = ? AND id = ?"
            " AND (last_active_at IS NULL OR last_active_at < ?)",
            (when, org_id, ref, when),
        )


def _erase_where(c: sqlite3.Connection, condition: str, params: Sequence[Any]) -> int:
    rids = [(row[0],) for row in c.execute(f"SELECT rid FROM memories WHERE {condition}", params)]
    return _erase_rids(c, rids)


def _erase_rids(c: sqlite3.Connection, rids: list[tuple[int]]) -> int:
    """Remove memories from the table and from every index over it."""
    c.executemany("DELETE FROM memory_tags WHERE rid = ?", rids)
    c.executemany("DELETE FROM memories_fts WHERE rowid = ?", rids)
    c.executemany("DELETE FROM memories WHERE rid = ?", rids)
    return len(rids)


def _statements(script: str) -> list[str]:
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("memtrace_server.storage.migrations") / "sqlite"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply pending migrations, each in its own transaction under the write lock."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
    )
    for version, script in _migrations():
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
            ).fetchone()
            if not done:
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, strftime('%s','now'))",
                    (version,),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
