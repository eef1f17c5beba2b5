"""PostgreSQL plans a ranked search for its terms every time. psycopg prepares a statement
it has run five times, and PostgreSQL may then plan it once for any values: a generic plan
of a text search was 7-16x slower than the plans for its own terms."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timezone
from typing import Any

import pytest

from memtrace_server.core.records import MemoryFilter, MemoryRecord, OrgRecord
from memtrace_server.storage.postgres import PostgresStore
from memtrace_server.storage.sql import Op, SqlStore, Steps, Stmt, run

pytestmark = pytest.mark.anyio
NOW = time.time_ns()


def memories(first: int, count: int) -> list[MemoryRecord]:
    """Memories ``first`` to ``first + count`` of one agent of org_a, a second apart."""
    return [
        MemoryRecord(
            id=f"mem_{NOW - n:016x}{n:010x}",
            org_id="org_a",
            agent_id="agent_1",
            content=f"invoice {n} refund",
            dedup_key=f"key{n}",
            time_ns=NOW - n * 10**9,
        )
        for n in range(first, first + count)
    ]


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(pg_url, max_size=1)  # one connection: the one whose statements we see
    await s.open()
    await s.create_org(OrgRecord("org_a", "A", NOW))
    await s.insert_memories("org_a", memories(0, 30), None, NOW)
    try:
        yield s
    finally:
        await s.close()


def prepared(store: PostgresStore, runs: Sequence[Op[Any]]) -> Op[list[str]]:
    """Run ops in turn on one connection; the statements it then holds prepared."""
    for op in runs:
        yield from op
    found = yield Stmt("SELECT statement FROM pg_prepared_statements")
    return [row[0] for row in found.rows]


async def test_a_ranked_search_is_never_prepared_but_a_lookup_is(store: PostgresStore) -> None:
    flt = MemoryFilter(agent_id="agent_1", query=("refund",), limit=5)
    where, params = store.memory_filter("org_a", flt)
    runs: list[Op[Any]] = [store.ranked("org_a", flt, where, params) for _ in range(8)]
    lookup = "SELECT id FROM memories WHERE org_id = ? AND agent_id = ? LIMIT 1"
    runs += [run(Stmt(lookup, ("org_a", "agent_1"))) for _ in range(8)]
    statements = await store._read(prepared(store, runs))
    assert any("LIMIT 1" in s for s in statements), statements  # psycopg does prepare
    assert not any("ts_rank" in s for s in statements), statements
    ranked = await store.query_memories("org_a", flt)
    assert len(ranked) == 5 and all(m.score for m in ranked)


async def test_every_gin_index_of_memories_is_keyed_by_org_first(store: PostgresStore) -> None:
    """Words, trigrams, tags and metadata are each found through a GIN index whose first
    column is the org: a lookup reads its own org's entries, not every org's matches
    intersected with the org's rows afterwards (migration 0013)."""
    found = await store._read(
        run(
            Stmt(
                "SELECT pg_get_indexdef(indexrelid) FROM pg_index"
                " WHERE indrelid = 'memories'::regclass"
            )
        )
    )
    gin = [row[0] for row in found.rows if "USING gin" in row[0]]
    for keyed in ("tsv", "content gin_trgm_ops", "tags", "jsonb) jsonb_path_ops"):
        assert any(keyed in d for d in gin), gin
    assert all("USING gin (org_id, " in d for d in gin), gin


async def test_a_dedup_lookup_probes_the_dedup_index_before_any_statistics(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition just filled by a bulk import has no statistics until autovacuum or the
    store gets to it. Looked up as one list (``dedup_key IN (...)``), its keys were then
    found by walking the org's time index; the store's lookup probes the dedup index per key
    (here with neither autovacuum nor the store's analyzer at work)."""
    from memtrace_server.storage import postgres

    monkeypatch.setattr(postgres, "ANALYZE_EVERY", 1 << 40)
    when = datetime.fromtimestamp(NOW / 1e9, timezone.utc)
    partition = f"memories_p{when.year:04d}{when.month:02d}"
    await store._write(run(Stmt(f"ALTER TABLE {partition} SET (autovacuum_enabled = false)")))
    for first in range(30, 3030, 1000):
        await store.insert_memories("org_a", memories(first, 1000), None, NOW)
    keys = [f"key{n}" for n in range(8)]
    window = (NOW - 86400 * 10**9, NOW + 1, NOW)

    async def plan(stmt: Stmt) -> str:
        found = await store._read(run(Stmt("EXPLAIN " + stmt.sql, stmt.params)))
        return "\n".join(row[0] for row in found.rows)

    as_a_list = await plan(SqlStore.dedup_lookup(store, "org_a", keys, window))
    assert "org_id_time_idx" in as_a_list, as_a_list  # what the store no longer does
    probed = await plan(store.dedup_lookup("org_a", keys, window))
    assert "org_id_dedup_key_time_idx" in probed and "org_id_time_idx" not in probed, probed
    found = await store._read(run(store.dedup_lookup("org_a", ["key100", "absent"], window)))
    assert [(key, time) for key, time, _ in found.rows] == [("key100", NOW - 100 * 10**9)]


@pytest.mark.parametrize(("threshold", "analyzed"), [(1, True), (1 << 40, False)])
async def test_a_partition_filled_before_any_statistics_is_analyzed(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch, threshold: int, analyzed: bool
) -> None:
    """Writes look for partitions that hold memories but no statistics yet, and analyze
    them: until autovacuum does, PostgreSQL plans their lookups blind (a bulk load's dedup
    lookups walked the org's time index)."""
    from memtrace_server.storage import postgres

    monkeypatch.setattr(postgres, "ANALYZE_EVERY", 50)
    monkeypatch.setattr(postgres, "ANALYZE_BYTES", threshold)
    partitions = await store._read(
        run(
            Stmt(
                "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'memories'::regclass"
            )
        )
    )
    for (name,) in partitions.rows:  # only the store analyzes them here, not autovacuum
        await store._write(run(Stmt(f"ALTER TABLE {name} SET (autovacuum_enabled = false)")))
    await store.insert_memories("org_a", memories(30, 30), None, NOW)  # 60 since the start
    if store._analyzer is not None:
        await store._analyzer
    found = await store._read(
        run(
            Stmt(
                "SELECT count(*) FROM pg_stats WHERE tablename IN"
                " (SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'memories'::regclass)"
            )
        )
    )
    assert (found.rows[0][0] > 0) is analyzed


# Substrings that pg_trgm takes apart in ways worth checking: short words, words bounded by
# punctuation, space or the pattern's ends, LIKE's own wildcards, and non-ASCII letters.
NEEDLES = (
    "ab", "Zq", "a", "a  ", "日b", "b日", "%", "\\", "__",
    "abc", "a-b", "a b", "-ab", "ab-", "ab ", " ab", "x_y", "__a", "a.b.c", "Zq!", "a%b",
    "日ab", "日本語", "crème", "q7 ",
)  # fmt: skip


async def test_a_substring_goes_to_the_trigram_index_only_with_a_trigram(
    store: PostgresStore,
) -> None:
    """pg_trgm reads every entry of its index for a LIKE pattern it finds no trigram in
    (on the 1M bench store, 1.9 s for a two-letter substring, which a plan made for any
    pattern sent there); the store tests such substrings with ``strpos()`` instead. Asked
    of pg_trgm itself: on rows with no trigram at all, an index scan for a pattern with one
    finds none, and for a pattern without, all of them."""
    from memtrace_server.storage.postgres import _keyed

    rows = 40

    def setup() -> Op[None]:
        yield Stmt("CREATE TEMP TABLE trgm_probe (c text)")
        yield Stmt(f"INSERT INTO trgm_probe SELECT '~~ ~~' FROM generate_series(1, {rows})")
        yield Stmt("CREATE INDEX ON trgm_probe USING gin (c gin_trgm_ops)")
        yield Stmt("SET enable_seqscan = off")

    def scanned(pattern: str) -> Op[int]:
        plan = yield Stmt(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM trgm_probe WHERE c LIKE ?",
            [pattern],
        )
        nodes = [plan.rows[0][0][0]["Plan"]]
        while nodes:
            node = nodes.pop()
            if node["Node Type"] == "Bitmap Index Scan":
                return int(node["Actual Rows"])
            nodes.extend(node.get("Plans", []))
        raise AssertionError(plan.rows)

    def probe() -> Op[dict[str, int]]:
        yield from setup()
        found = {}
        for needle in NEEDLES:
            escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            found[needle] = yield from scanned(f"%{escaped}%")
        yield Stmt("RESET enable_seqscan")
        yield Stmt("DROP TABLE trgm_probe")
        return found

    found = await store._write(probe())
    for needle, read in found.items():
        if _keyed(needle):
            assert read == 0, (needle, found)
    unkeyed = [n for n in NEEDLES if not _keyed(n)]
    assert {"ab", "Zq", "a", "a  "} <= set(unkeyed), unkeyed
    assert all(found[n] == rows for n in ("ab", "Zq", "a", "a  ")), found


async def test_the_stores_connections_compile_no_plan(store: PostgresStore) -> None:
    """JIT compilation is off on every connection of the store: a ranked query of many
    words is costed above ``jit_above_cost`` and was compiled on each run (850 ms against
    190 for a 12-word query of the 1M bench's busy agent)."""

    def settings() -> Op[list[str]]:
        shown = [(yield Stmt("SHOW jit")).rows[0][0]]
        return shown

    assert await store._read(settings()) == ["off"]
    assert await store._write(settings()) == ["off"]


async def test_a_statement_keeps_one_plan_for_any_values(store: PostgresStore) -> None:
    """Every statement not marked to replan keeps one plan on its connection: left to
    choose, PostgreSQL planned an agent's recall anew on each run at 1M (its plan for any
    window costed above its plans for each), 0.5-0.8 ms against 0.2."""
    for n in range(12):
        flt = MemoryFilter(agent_id="agent_1", since_ns=NOW - (n + 2) * 10**9, limit=50)
        assert len(await store.query_memories("org_a", flt)) == 2 + n
    found = await store._read(
        run(
            Stmt(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE '%m.time > $%' AND statement LIKE '%LIMIT%'"
            )
        )
    )
    assert found.rows and all(generic > 0 and custom == 0 for generic, custom in found.rows)


def explained(op: Op[Any]) -> Op[Any]:
    """Run ``op`` until its ranked statement, and return that statement's plan as it ran
    (``EXPLAIN ANALYZE``, JSON) instead of its rows."""
    steps = Steps(op)
    while (stmt := steps.next()) is not None:
        if "ts_rank" in stmt.sql:
            found = yield Stmt("EXPLAIN (ANALYZE, FORMAT JSON) " + stmt.sql, stmt.params)
            return found.rows[0][0]
        steps.result = yield stmt
    raise AssertionError("no ranked statement")


def scans(plan: Any, text: str) -> list[int]:
    """How many times each node of ``plan`` whose condition holds ``text`` ran."""
    if isinstance(plan, list):
        return [n for node in plan for n in scans(node, text)]
    if not isinstance(plan, dict):
        return []
    conditions = [str(v) for k, v in plan.items() if k not in ("Plan", "Plans")]
    own = [plan["Actual Loops"]] if any(text in c for c in conditions) else []
    return own + scans(plan.get("Plans", []), text) + scans(plan.get("Plan", []), text)


async def test_the_pool_of_every_term_is_not_read_for_common_words(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ranked query's pool of every term is read only when one of its words is in fewer
    than a tenth of a full pool of any term: for common words the index intersects their
    whole lists, and two that never meet (two event types, here two words that alternate)
    found nothing at that cost. A rare word keeps the pool of every term."""
    from memtrace_server.storage import postgres

    monkeypatch.setattr(postgres, "RANKED_POOL", 5)
    kinds = [
        MemoryRecord(
            id=f"mem_{NOW - n:016x}{n:010x}",
            org_id="org_a",
            agent_id="agent_2",
            content=("alpha note", "beta note")[n % 2] + (" orchid" if n == 30 else ""),
            time_ns=NOW - n * 10**9,
        )
        for n in range(31)
    ]
    await store.insert_memories("org_a", kinds, None, NOW)
    for words, every in (
        (("alpha", "beta"), "'alpha' & 'beta'"),
        (("alpha", "orchid"), "'alpha' & 'orchid'"),
    ):
        flt = MemoryFilter(agent_id="agent_2", query=words, limit=1)
        where, params = store.memory_filter("org_a", flt)
        plan = await store._read(explained(store.ranked("org_a", flt, where, params)))
        loops = scans(plan, every.replace("'", "''"))
        assert loops, plan
        if "orchid" in words:
            assert max(loops) >= 1  # read
            found = await store.query_memories("org_a", flt)
            assert [m.id for m in found] == [kinds[30].id]  # the oldest, both words
        else:
            assert max(loops) == 0  # never read
