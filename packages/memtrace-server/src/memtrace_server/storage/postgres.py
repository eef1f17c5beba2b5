"""PostgreSQL store (psycopg 3, async pool): many server processes may share one database.

Nothing here assumes a single process: dedup takes a transaction-scoped advisory lock
on (org, dedup key), migrations and partition creation take a global advisory lock,
and there is no cache to invalidate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

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
from memtrace_server.storage.base import DuplicateName, InvalidValue, StoreError
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
Conn = psycopg.AsyncConnection[Any]
log = logging.getLogger("memtrace.storage")

DAY_NS = 86_400 * 1_000_000_000
MIGRATION_LOCK = 0x6D656D7472616365  # "memtrace"
PARTITION_LOCK = MIGRATION_LOCK + 1
MONTHS_BEHIND, MONTHS_AHEAD = 1, 3
_ID_TIME = re.compile(r"^mem_([0-9a-f]{16})[0-9a-f]{10}$")


def _tags(value: list[str] | None) -> tuple[str, ...]:
    return tuple(value or ())


def _memory(row: Sequence[Any]) -> MemoryRecord:
    return memory_from_row(row, _tags)


def _tags_contain(_: str, flt: MemoryFilter) -> tuple[list[str], list[Any]]:
    return ["m.tags @> %s"], [list(flt.tags)]


POSTGRES = Dialect(placeholder="%s", substring_function="strpos", tags_clause=_tags_contain)


def _month_start(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000_000


def _shift(year: int, month: int, by: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + by
    return index // 12, index % 12 + 1


class PostgresStore:
    """The server store: one PostgreSQL database, shared by any number of processes."""

    def __init__(
        self, url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 5.0
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._min_size, self._max_size = min_size, max_size
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._maintenance: asyncio.Task[None] | None = None

    # lifecycle

    async def open(self) -> None:
        """Connect, apply migrations, create partitions ahead and start their upkeep."""
        self._pool = AsyncConnectionPool(
            self.url,
            min_size=self._min_size,
            max_size=self._max_size,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(self.timeout))},
            open=False,
            timeout=self.timeout,
        )
        try:
            await self._pool.open(wait=True, timeout=self.timeout)
        except (PoolTimeout, psycopg.Error) as exc:
            await self._pool.close()
            self._pool = None
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        await self._run(_migrate)
        await self._run(_ensure_partitions)
        self._maintenance = asyncio.get_running_loop().create_task(self._keep_partitions())

    async def close(self) -> None:
        """Stop the upkeep task and close the pool."""
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
                await self._run(_ensure_partitions)
            except StoreError as exc:
                log.warning("partition upkeep failed: %s", exc)

    async def _run(self, fn: Callable[[Conn], Awaitable[T]], *, transaction: bool = False) -> T:
        if self._pool is None:
            raise StoreError("store is not open")
        try:
            async with self._pool.connection(timeout=self.timeout) as conn:
                if not transaction:
                    return await fn(conn)
                async with conn.transaction():
                    return await fn(conn)
        except psycopg.DataError as exc:
            raise InvalidValue(str(exc).splitlines()[0]) from exc
        except (PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreError(f"PostgreSQL unavailable: {exc}") from exc

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async def op(conn: Conn) -> list[tuple[Any, ...]]:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

        return await self._run(op)

    async def _row(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = await self._rows(sql, params)
        return rows[0] if rows else None

    async def ping(self) -> None:
        """Run a trivial query."""
        await self._rows("SELECT 1")

    # organisations and keys

    async def create_org(self, org: OrgRecord) -> None:
        """Insert an org."""
        try:
            await self._rows(
                "INSERT INTO orgs (id, name, created_at) VALUES (%s, %s, %s) RETURNING id",
                (org.id, org.name, org.created_at_ns),
            )
        except psycopg.errors.UniqueViolation as exc:
            raise DuplicateName(f"org '{org.id}' already exists") from exc

    async def list_orgs(self) -> list[OrgRecord]:
        """All orgs, oldest first."""
        rows = await self._rows(f"SELECT {ORG_COLUMNS} FROM orgs ORDER BY created_at, id")
        return [org_from_row(row) for row in rows]

    async def get_org(self, org_id: str) -> OrgRecord | None:
        """One org."""
        row = await self._row(f"SELECT {ORG_COLUMNS} FROM orgs WHERE id = %s", (org_id,))
        return org_from_row(row) if row else None

    async def org_usage(self, org_id: str) -> dict[str, int]:
        """Counts of what an org owns."""
        usage = {}
        for table in ORG_TABLES:
            row = await self._row(f"SELECT count(*) FROM {table} WHERE org_id = %s", (org_id,))
            usage[table] = int(row[0]) if row else 0
        return usage

    async def delete_org(self, org_id: str) -> bool:
        """Delete an org with its keys, agents, sessions and memories."""

        async def op(conn: Conn) -> bool:
            for table in ("memories", "sessions", "agents", "api_keys", "org_stores"):
                await conn.execute(f"DELETE FROM {table} WHERE org_id = %s", (org_id,))
            cur = await conn.execute("DELETE FROM orgs WHERE id = %s", (org_id,))
            return cur.rowcount > 0

        return await self._run(op, transaction=True)

    async def create_key(
        self, org_id: str, name: str, digest: str, prefix: str, permissions: str, now_ns: int
    ) -> ApiKeyRecord:
        """Store a key digest."""
        try:
            row = await self._row(
                "INSERT INTO api_keys (org_id, name, key_digest, key_prefix, permissions, created_at)"
                f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {KEY_COLUMNS}",
                (org_id, name, digest, prefix, permissions, now_ns),
            )
        except psycopg.errors.ForeignKeyViolation as exc:
            raise LookupError(f"org '{org_id}' not found") from exc
        except psycopg.errors.UniqueViolation as exc:
            raise DuplicateName(f"key with name '{name}' already exists") from exc
        assert row is not None
        return key_from_row(row)

    async def list_keys(self, org_id: str) -> list[ApiKeyRecord]:
        """Keys of one org."""
        rows = await self._rows(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = %s ORDER BY id", (org_id,)
        )
        return [key_from_row(r) for r in rows]

    async def revoke_key(self, key_id: int, org_id: str | None = None) -> bool:
        """Delete a key."""
        if org_id is None:
            rows = await self._rows("DELETE FROM api_keys WHERE id = %s RETURNING id", (key_id,))
        else:
            rows = await self._rows(
                "DELETE FROM api_keys WHERE id = %s AND org_id = %s RETURNING id", (key_id, org_id)
            )
        return bool(rows)

    async def find_key(self, digest: str) -> ApiKeyRecord | None:
        """The key stored under this digest."""
        row = await self._row(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_digest = %s", (digest,)
        )
        return key_from_row(row) if row else None

    async def set_org_store(self, binding: OrgStoreBinding) -> None:
        """Bind an org to its own store."""
        try:
            await self._rows(
                "INSERT INTO org_stores (org_id, url_cipher, url_nonce, updated_at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (org_id) DO UPDATE SET url_cipher = excluded.url_cipher,"
                " url_nonce = excluded.url_nonce, updated_at = excluded.updated_at RETURNING org_id",
                (binding.org_id, binding.url_cipher, binding.url_nonce, binding.updated_at_ns),
            )
        except psycopg.errors.ForeignKeyViolation as exc:
            raise LookupError(f"org '{binding.org_id}' not found") from exc

    async def list_org_stores(self) -> list[OrgStoreBinding]:
        """Every binding."""
        rows = await self._rows("SELECT org_id, url_cipher, url_nonce, updated_at FROM org_stores")
        return [OrgStoreBinding(r[0], bytes(r[1]), bytes(r[2]), r[3]) for r in rows]

    async def delete_org_store(self, org_id: str) -> bool:
        """Remove a binding."""
        return bool(
            await self._rows("DELETE FROM org_stores WHERE org_id = %s RETURNING org_id", (org_id,))
        )

    # agents and sessions

    @staticmethod
    async def _find_agent(conn: Conn, org_id: str, ref: str) -> AgentRecord | None:
        cur = await conn.execute(
            f"SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = %s AND (id = %s OR name = %s)"
            " ORDER BY (id = %s) DESC LIMIT 1",
            (org_id, ref, ref, ref),
        )
        row = await cur.fetchone()
        return agent_from_row(row) if row else None

    @staticmethod
    async def _insert_agent(conn: Conn, a: AgentRecord) -> None:
        await conn.execute(
            f"INSERT INTO agents ({AGENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                a.org_id,
                a.id,
                a.name,
                a.description,
                dump_json(a.config) or "{}",
                a.implicit,
                a.created_at_ns,
                a.last_active_at_ns,
            ),
        )

    async def register_agent(self, org_id: str, agent: AgentRecord) -> AgentRecord:
        """Insert an agent or adopt the implicit one of the same name."""

        async def op(conn: Conn) -> AgentRecord:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", (f"{org_id}|{agent.name}",)
            )
            cur = await conn.execute(
                f"SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = %s AND name = %s",
                (org_id, agent.name),
            )
            row = await cur.fetchone()
            if row is None:
                try:
                    await self._insert_agent(conn, agent)
                except psycopg.errors.UniqueViolation as exc:
                    raise DuplicateName(agent.name) from exc
                return agent
            existing = agent_from_row(row)
            if not existing.implicit:
                raise DuplicateName(agent.name)
            await conn.execute(
                "UPDATE agents SET description = %s, config_json = %s, implicit = false"
                " WHERE org_id = %s AND id = %s",
                (agent.description, dump_json(agent.config) or "{}", org_id, existing.id),
            )
            found = await self._find_agent(conn, org_id, existing.id)
            assert found is not None
            return found

        return await self._run(op, transaction=True)

    async def ensure_agent(self, org_id: str, ref: str, implicit: AgentRecord) -> AgentRecord:
        """Resolve an agent by id or name, registering ``implicit`` when absent."""

        async def op(conn: Conn) -> AgentRecord:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", (f"{org_id}|{ref}",)
            )
            found = await self._find_agent(conn, org_id, ref)
            if found is not None:
                return found
            await self._insert_agent(conn, implicit)
            return implicit

        return await self._run(op, transaction=True)

    async def get_agent(self, org_id: str, ref: str) -> AgentRecord | None:
        """The agent with this id, else this name."""
        return await self._run(lambda conn: self._find_agent(conn, org_id, ref))

    async def list_agents(self, org_id: str) -> list[AgentRecord]:
        """Agents of an org, newest first."""
        rows = await self._rows(
            f"SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = %s ORDER BY created_at DESC, id",
            (org_id,),
        )
        return [agent_from_row(r) for r in rows]

    async def delete_agent(self, org_id: str, agent_id: str) -> bool | int:
        """Delete an agent that has no sessions."""

        async def op(conn: Conn) -> bool | int:
            cur = await conn.execute(
                "SELECT count(*) FROM sessions WHERE org_id = %s AND agent_id = %s",
                (org_id, agent_id),
            )
            row = await cur.fetchone()
            if row and row[0]:
                return int(row[0])
            try:
                cur = await conn.execute(
                    "DELETE FROM agents WHERE org_id = %s AND id = %s", (org_id, agent_id)
                )
            except psycopg.errors.ForeignKeyViolation:
                return 1  # a session appeared meanwhile
            return cur.rowcount > 0

        return await self._run(op, transaction=True)

    async def agent_stats(self, org_id: str, agent_id: str, now_ns: int) -> AgentStatsRecord:
        """Counts for one agent id."""
        types = dict(
            await self._rows(
                "SELECT memory_type, count(*) FROM memories WHERE org_id = %s AND agent_id = %s GROUP BY memory_type",
                (org_id, agent_id),
            )
        )
        recent = await self._row(
            "SELECT count(*), count(*) FILTER (WHERE event_type = 'error') FROM memories"
            " WHERE org_id = %s AND agent_id = %s AND time > %s",
            (org_id, agent_id, now_ns - DAY_NS),
        )
        last = await self._row(
            "SELECT max(time) FROM memories WHERE org_id = %s AND agent_id = %s", (org_id, agent_id)
        )
        sessions = await self._row(
            "SELECT count(*), count(*) FILTER (WHERE status = 'active') FROM sessions"
            " WHERE org_id = %s AND agent_id = %s",
            (org_id, agent_id),
        )
        assert recent is not None and last is not None and sessions is not None
        return AgentStatsRecord(
            memory_count=sum(int(v) for v in types.values()),
            memories_24h=int(recent[0]),
            errors_24h=int(recent[1]),
            session_count=int(sessions[0]),
            active_sessions=int(sessions[1]),
            last_active_at_ns=last[0],
            memory_types={k: int(v) for k, v in types.items()},
        )

    async def create_session(self, org_id: str, session: SessionRecord) -> None:
        """Insert a session."""
        try:
            await self._rows(
                f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                session_values(org_id, session),
            )
        except psycopg.errors.ForeignKeyViolation as exc:
            raise LookupError(f"agent '{session.agent_id}' not found") from exc

    async def get_session(self, org_id: str, session_id: str) -> SessionRecord | None:
        """One session."""
        row = await self._row(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE org_id = %s AND id = %s",
            (org_id, session_id),
        )
        return session_from_row(row) if row else None

    async def list_sessions(self, org_id: str, agent_id: str | None) -> list[SessionRecord]:
        """Sessions, newest first."""
        if agent_id:
            rows = await self._rows(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE org_id = %s AND agent_id = %s"
                " ORDER BY created_at DESC, id",
                (org_id, agent_id),
            )
        else:
            rows = await self._rows(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE org_id = %s ORDER BY created_at DESC, id",
                (org_id,),
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

        async def op(conn: Conn) -> SessionRecord | None:
            cur = await conn.execute(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE org_id = %s AND id = %s FOR UPDATE",
                (org_id, session_id),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            current = session_from_row(row)
            closed_at = current.closed_at_ns
            if status == "closed":
                closed_at = now_ns
            elif status == "active":
                closed_at = None
            cur = await conn.execute(
                "UPDATE sessions SET status = %s, metadata_json = %s, updated_at = %s, closed_at = %s"
                f" WHERE org_id = %s AND id = %s RETURNING {SESSION_COLUMNS}",
                (
                    status or current.status,
                    dump_json(merge_metadata(current.metadata, metadata_patch)) or "{}",
                    now_ns,
                    closed_at,
                    org_id,
                    session_id,
                ),
            )
            updated = await cur.fetchone()
            return session_from_row(updated) if updated else None

        return await self._run(op, transaction=True)

    # memories

    async def insert_memories(
        self, org_id: str, memories: Sequence[MemoryRecord], dedup_window_ns: int | None
    ) -> list[bool]:
        """Insert memories atomically, skipping duplicates within the window."""

        async def op(conn: Conn) -> list[bool]:
            if dedup_window_ns is not None:
                # Sorted, so concurrent batches take the locks in one order and never deadlock.
                for key in sorted({m.dedup_key for m in memories if m.dedup_key}):
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                        (f"{org_id}|{key}",),
                    )
            stored: list[bool] = []
            for m in memories:
                if dedup_window_ns is not None and m.dedup_key:
                    cur = await conn.execute(
                        "SELECT 1 FROM memories WHERE org_id = %s AND dedup_key = %s AND time > %s AND time < %s"
                        " AND (expires_at IS NULL OR expires_at > %s) LIMIT 1",
                        (
                            org_id,
                            m.dedup_key,
                            m.time_ns - dedup_window_ns,
                            m.time_ns + dedup_window_ns,
                            time.time_ns(),
                        ),
                    )
                    if await cur.fetchone():
                        stored.append(False)
                        continue
                await _insert_memory(conn, org_id, m)
                stored.append(True)
            await _touch(conn, org_id, [m for m, ok in zip(memories, stored, strict=True) if ok])
            return stored

        return await self._run(op, transaction=True)

    async def get_memory(self, org_id: str, ref: str) -> MemoryRecord | None:
        """A memory by id, else the newest one with that dedup key."""
        match = _ID_TIME.match(ref)
        if match:  # the id carries its time: one partition, one index probe
            row = await self._row(
                f"SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.org_id = %s AND m.time = %s AND m.id = %s",
                (org_id, int(match.group(1), 16), ref),
            )
            if row:
                return _memory(row)
        row = await self._row(
            f"SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.org_id = %s AND m.id = %s",
            (org_id, ref),
        ) or await self._row(
            f"SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.org_id = %s AND m.dedup_key = %s"
            " ORDER BY m.time DESC LIMIT 1",
            (org_id, ref),
        )
        return _memory(row) if row else None

    async def query_memories(self, org_id: str, flt: MemoryFilter) -> list[MemoryRecord]:
        """Memories matching a filter; with ``query``, ranked by full-text relevance."""
        where, params = memory_filter_sql(org_id, flt, POSTGRES)
        if flt.query:
            # Terms are letters and digits only (core.text), so they are safe tsquery lexemes.
            tsquery = " | ".join(flt.query)
            rows = await self._rows(
                f"SELECT {MEMORY_COLUMNS}, ts_rank('{{0.5, 0.4, 0.4, 1.0}}', m.tsv, q, 1) AS rank"
                " FROM memories m, to_tsquery('english', %s) q"
                f" WHERE m.tsv @@ q AND {where} ORDER BY rank DESC, m.time DESC LIMIT %s OFFSET %s",
                [tsquery, *params, flt.limit, flt.offset],
            )
            return [replace(_memory(r[:-1]), score=float(r[-1])) for r in rows]
        tail, tail_params = order_limit_sql(flt, "%s")
        rows = await self._rows(
            f"SELECT {MEMORY_COLUMNS} FROM memories m WHERE {where}{tail}", [*params, *tail_params]
        )
        return [_memory(r) for r in rows]

    # embeddings

    async def pending_embeddings(
        self, org_id: str, after_rid: int, limit: int
    ) -> list[tuple[int, str]]:
        """(rid, content) of memories after ``after_rid`` without an embedding."""
        rows = await self._rows(
            "SELECT rid, content FROM memories WHERE rid > %s AND org_id = %s"
            " AND embedding IS NULL ORDER BY rid LIMIT %s",
            (after_rid, org_id, limit),
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    async def put_embeddings(self, org_id: str, rows: Sequence[tuple[int, bytes]]) -> None:
        """Store embeddings by rid."""

        async def op(conn: Conn) -> None:
            async with conn.cursor() as cur:
                await cur.executemany(
                    "UPDATE memories SET embedding = %s WHERE rid = %s AND org_id = %s",
                    [(vector, rid, org_id) for rid, vector in rows],
                )

        await self._run(op, transaction=True)

    async def embedded_memories(
        self, org_id: str, flt: MemoryFilter
    ) -> list[tuple[MemoryRecord, bytes]]:
        """Memories matching the filter that have an embedding, newest first."""
        where, params = memory_filter_sql(org_id, replace(flt, query=()), POSTGRES)
        rows = await self._rows(
            f"SELECT {MEMORY_COLUMNS}, m.embedding FROM memories m"
            f" WHERE {where} AND m.embedding IS NOT NULL ORDER BY m.time DESC LIMIT %s",
            (*params, flt.limit),
        )
        return [(_memory(r[:-1]), bytes(r[-1])) for r in rows]

    # lifecycle

    async def set_org_retention(self, org_id: str, days: int | None) -> bool:
        """Set or clear an org's retention in days."""
        rows = await self._rows(
            "UPDATE orgs SET retention_days = %s WHERE id = %s RETURNING id", (days, org_id)
        )
        return bool(rows)

    async def delete_memory(self, org_id: str, memory_id: str) -> bool:
        """Erase one memory."""
        rows = await self._rows(
            "DELETE FROM memories WHERE org_id = %s AND id = %s RETURNING id", (org_id, memory_id)
        )
        return bool(rows)

    async def delete_memories(self, org_id: str, flt: MemoryFilter) -> int:
        """Erase every memory matching the filter (limit and offset ignored)."""
        where, params = memory_filter_sql(org_id, flt, POSTGRES)

        async def op(conn: Conn) -> int:
            cur = await conn.execute(f"DELETE FROM memories AS m WHERE {where}", params)
            return cur.rowcount

        return await self._run(op, transaction=True)

    async def count_memories(self, org_id: str, flt: MemoryFilter) -> int:
        """How many memories match the filter."""
        where, params = memory_filter_sql(org_id, flt, POSTGRES)
        row = await self._row(f"SELECT count(*) FROM memories m WHERE {where}", params)
        return int(row[0]) if row else 0

    async def delete_session(self, org_id: str, session_id: str, cascade: bool) -> bool:
        """Delete a session (and, with ``cascade``, the memories that carry its id)."""

        async def op(conn: Conn) -> bool:
            cur = await conn.execute(
                "DELETE FROM sessions WHERE org_id = %s AND id = %s", (org_id, session_id)
            )
            if cur.rowcount == 0:
                return False
            if cascade:
                await conn.execute(
                    "DELETE FROM memories WHERE org_id = %s AND session_id = %s",
                    (org_id, session_id),
                )
            return True

        return await self._run(op, transaction=True)

    async def erase_agent(self, org_id: str, agent: AgentRecord) -> None:
        """Delete an agent, its sessions and its memories (under its id or its name)."""

        async def op(conn: Conn) -> None:
            await conn.execute(
                "DELETE FROM memories WHERE org_id = %s AND agent_id IN (%s, %s)",
                (org_id, agent.id, agent.name),
            )
            await conn.execute(
                "DELETE FROM sessions WHERE org_id = %s AND agent_id = %s", (org_id, agent.id)
            )
            await conn.execute(
                "DELETE FROM agents WHERE org_id = %s AND id = %s", (org_id, agent.id)
            )

        await self._run(op, transaction=True)

    async def update_agent(
        self,
        org_id: str,
        agent_id: str,
        description: str | None,
        config_patch: dict[str, Any] | None,
    ) -> AgentRecord | None:
        """Change an agent's description and merge its config."""

        async def op(conn: Conn) -> AgentRecord | None:
            cur = await conn.execute(
                f"SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = %s AND id = %s FOR UPDATE",
                (org_id, agent_id),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            current = agent_from_row(row)
            cur = await conn.execute(
                "UPDATE agents SET description = %s, config_json = %s WHERE org_id = %s AND id = %s"
                f" RETURNING {AGENT_COLUMNS}",
                (
                    current.description if description is None else description,
                    dump_json(merge_metadata(current.config, config_patch)) or "{}",
                    org_id,
                    agent_id,
                ),
            )
            updated = await cur.fetchone()
            return agent_from_row(updated) if updated else None

        return await self._run(op, transaction=True)

    async def purge_expired(self, now_ns: int, retention_floors: dict[str, int]) -> int:
        """Erase memories past their expiry, and those older than their org's retention."""

        async def op(conn: Conn) -> int:
            cur = await conn.execute(
                "DELETE FROM memories WHERE expires_at IS NOT NULL AND expires_at <= %s", (now_ns,)
            )
            erased = cur.rowcount
            for org_id, floor in retention_floors.items():
                cur = await conn.execute(
                    "DELETE FROM memories WHERE org_id = %s AND time <= %s", (org_id, floor)
                )
                erased += cur.rowcount
            return erased

        return await self._run(op, transaction=True)

    async def export_memories(
        self, org_id: str, agent_id: str | None, after: tuple[int, int] | None, limit: int
    ) -> list[tuple[tuple[int, int], MemoryRecord]]:
        """A page of memories in (time, insertion) order after the ``after`` cursor."""
        where: list[str] = ["m.org_id = %s"]
        params: list[Any] = [org_id]
        if agent_id:
            where.append("m.agent_id = %s")
            params.append(agent_id)
        if after is not None:
            where.append("(m.time, m.rid) > (%s, %s)")
            params.extend(after)
        rows = await self._rows(
            f"SELECT {MEMORY_COLUMNS}, m.rid FROM memories m WHERE {' AND '.join(where)}"
            " ORDER BY m.time, m.rid LIMIT %s",
            [*params, limit],
        )
        return [((r[12], r[-1]), _memory(r[:-1])) for r in rows]

    async def import_memories(self, org_id: str, memories: Sequence[MemoryRecord]) -> int:
        """Insert memories whose ids are not stored yet; how many were new."""

        async def op(conn: Conn) -> int:
            new = 0
            for m in memories:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 2))", (m.id,))
                cur = await conn.execute(
                    "SELECT 1 FROM memories WHERE org_id = %s AND time = %s AND id = %s",
                    (org_id, m.time_ns, m.id),
                )
                if await cur.fetchone() is None:
                    await _insert_memory(conn, org_id, m)
                    new += 1
            return new

        return await self._run(op, transaction=True)

    async def import_agent(self, org_id: str, agent: AgentRecord) -> bool:
        """Insert an agent unless its id (or name) exists."""
        rows = await self._rows(
            f"INSERT INTO agents ({AGENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING id",
            (
                org_id,
                agent.id,
                agent.name,
                agent.description,
                dump_json(agent.config) or "{}",
                agent.implicit,
                agent.created_at_ns,
                agent.last_active_at_ns,
            ),
        )
        return bool(rows)

    async def import_session(self, org_id: str, session: SessionRecord) -> bool:
        """Insert a session unless its id exists."""
        rows = await self._rows(
            f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING id",
            session_values(org_id, session),
        )
        return bool(rows)


async def _insert_memory(conn: Conn, org_id: str, m: MemoryRecord) -> None:
    context = ""
    if m.session_id:
        # The previous memory of the session lends its words to this one (see the SQLite store).
        cur = await conn.execute(
            "SELECT content FROM memories WHERE org_id = %s AND session_id = %s AND time <= %s"
            " ORDER BY time DESC, rid DESC LIMIT 1",
            (org_id, m.session_id, m.time_ns),
        )
        before = await cur.fetchone()
        if before is not None:
            context = before[0]
    await conn.execute(
        "INSERT INTO memories (id, org_id, agent_id, session_id, memory_type, event_type, content,"
        " metadata_json, tags, dedup_key, importance, parent_id, time, expires_at, context)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (*memory_values(org_id, m, list(m.tags)), context),
    )


async def _touch(conn: Conn, org_id: str, memories: Sequence[MemoryRecord]) -> None:
    """Keep ``last_active_at`` of the agents and sessions the memories belong to."""
    latest: dict[tuple[str, str], int] = {}
    for m in memories:
        for kind, ref in (("agents", m.agent_id), ("sessions", m.session_id)):
            if ref:
                latest[(kind, ref)] = max(latest.get((kind, ref), 0), m.time_ns)
    for (kind, ref), when in sorted(latest.items()):
        await conn.execute(
            f"UPDATE {kind} SET last_active_at = %s WHERE org_id = %s AND id = %s"
            " AND (last_active_at IS NULL OR last_active_at < %s)",
            (when, org_id, ref, when),
        )


def _statements(script: str) -> list[str]:
    """Split a migration on semicolons at line ends (the files contain no procedural code)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip().rstrip(";")]


async def _migrate(conn: Conn) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at bigint NOT NULL)"
        )
        cur = await conn.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in await cur.fetchall()}
        folder = resources.files("memtrace_server.storage.migrations") / "postgres"
        scripts = sorted(
            (int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8"))
            for entry in folder.iterdir()
            if entry.name.endswith(".sql")
        )
        for version, script in scripts:
            if version in done:
                continue
            for statement in _statements(script):
                await conn.execute(statement.rstrip(";"))
            await conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (%s, extract(epoch FROM now())::bigint)",
                (version,),
            )


async def _ensure_partitions(conn: Conn) -> None:
    """Monthly partitions from a month back to three months ahead of now."""
    today = datetime.now(timezone.utc)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        for offset in range(-MONTHS_BEHIND, MONTHS_AHEAD + 1):
            year, month = _shift(today.year, today.month, offset)
            end_year, end_month = _shift(year, month, 1)
            name = f"memories_p{year:04d}{month:02d}"
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF memories"
                f" FOR VALUES FROM ({_month_start(year, month)}) TO ({_month_start(end_year, end_month)})"
            )
