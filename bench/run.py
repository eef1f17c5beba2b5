"""``make bench``: Memtrace against the floor of its own stack, measured in one run.

    python bench/run.py             # full: SQLite at 100k, 1M, 3M, then PostgreSQL at 100k, 1M
    python bench/run.py --quick     # a minute or two: SQLite at 10k and 20k, short runs
    python bench/run.py --postgres  # PostgreSQL only (--sqlite: SQLite only)
    python bench/run.py --only reads --only busy --sizes 100000,300000

Phases (``--only`` picks some): ``floors`` (the raw and the framework floor),
``ingest`` (single POSTs at c=1, 8, 32; c=32 again with ``--workers 2``; batches against
a raw ``executemany``; backfilled batches on an empty store), ``reads`` (the reads of
agents with spread activity at c=1 and c=32, the console pages, and the writes at that
size: a single POST with its dedup check and backfilled batches) and ``busy`` (the reads
of one agent that holds ``--busy-share`` of the store, at c=1). Reads run at each of
``--sizes`` on one store, grown in place by ``bench/load_data.py`` between sizes; after
each size's reads over loopback, the same reads run in this process through the app, on
warm pages (``bench/inprocess.py``).

Every server is its own process (``memtrace serve`` and the two floors in
``bench/floors.py``, all with the same uvicorn settings) driven over loopback by ``wrk``
(Debian package ``wrk``) with the Lua scripts in ``bench/wrk``. PostgreSQL is the tests'
throwaway server, restarted with ``fsync`` on so that its writes are durable too. Each
figure is the median of ``--runs`` runs, taken in rounds (one run of each read, or of each
server's POSTs, per round); ratios compare figures of this same run. Prints
markdown tables and a check of each goal, and writes JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import console_pages
import goals
import httpx
import inprocess
from inprocess import Request
from server import Server, create_key, free_port, machine_ticks, serve_memtrace, sqlite_url

K = TypeVar("K")
HERE = Path(__file__).resolve().parent
WRK_DIR = HERE / "wrk"
PHASES = ("floors", "ingest", "reads", "busy")
FULL_SIZES = {"sqlite": "100000,1000000,3000000", "postgresql": "100000,1000000"}
QUICK_SIZES = "10000,20000"
BUSY_SHARE = 0.4
BATCH = 500
BACKFILL_BATCH = 1000
IN_PROCESS_REQUESTS = 40  # of each read, made in the bench's process (bench/inprocess.py)
BACKFILL_DAYS = 90
MIN_REQUESTS = 5
MAX_SECONDS = 60


@dataclass(frozen=True)
class Job:
    """One wrk load on ``server``: a Lua script of ``bench/wrk`` at ``connections``, with its
    environment."""

    server: Server
    script: str
    connections: int
    env: dict[str, str]
    path: str = "/"
    seconds: float | None = None  # the bench's run length when None


class Bench:
    """Runs wrk and keeps medians."""

    def __init__(self, runs: int, seconds: float, work: Path):
        self.runs = runs
        self.seconds = seconds
        self.work = work

    def wrk(
        self,
        server: Server,
        script: str,
        connections: int,
        env: dict[str, str],
        path: str = "/",
        seconds: float | None = None,
    ) -> dict[str, float]:
        """Median figures of ``runs`` wrk runs of ``script`` at ``connections``."""
        return self.interleaved({0: Job(server, script, connections, env, path, seconds)})[0]

    def interleaved(self, jobs: dict[K, Job]) -> dict[K, dict[str, float]]:
        """Median figures of each job's ``runs`` runs, taken in rounds (one run of every job
        per round), so that a slow minute of a shared machine lands on one run of each job
        rather than on every run of one. A run that completes fewer than ``MIN_REQUESTS``
        (requests of seconds) is run again four times as long, up to ``MAX_SECONDS``.

        Each run starts once the server is done with the one before: wrk stops with up to
        one request a connection in the server, which the next run's first request would
        wait behind (the read run after the org's 12-word query at c=32 then had a p95 of
        166 ms at 3M, its p50 1.2, as wrk counts the requests a stall kept it from
        sending)."""
        results: dict[K, list[dict[str, float]]] = {name: [] for name in jobs}
        for _ in range(self.runs):
            for name, job in jobs.items():
                took = job.seconds or self.seconds
                result = self._drained(job, took)
                while result["requests"] < MIN_REQUESTS and took < MAX_SECONDS:
                    took = min(MAX_SECONDS, took * 4)
                    result = self._drained(job, took)
                results[name].append(result)
        return {
            name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            for name, runs in results.items()
        }

    def _drained(self, job: Job, seconds: float) -> dict[str, float]:
        """A wrk run of ``job``, then a wait as long as its slowest request: what it left
        in the server is done by then."""
        result = self._wrk(job, seconds)
        time.sleep(min(result["max_us"] / 1e6, MAX_SECONDS))
        return result

    def _wrk(self, job: Job, seconds: float) -> dict[str, float]:
        argv = [
            "wrk",
            f"-t{min(2, job.connections)}",
            f"-c{job.connections}",
            f"-d{seconds:g}s",
            "--timeout",
            f"{MAX_SECONDS}s",
            "-s",
            str(WRK_DIR / job.script),
            job.server.url + job.path,
        ]
        run_env = {
            **os.environ,
            "BENCH_DIR": str(WRK_DIR),
            "BENCH_NONCE": uuid.uuid4().hex[:12],
            **job.env,
        }
        machine, server, wrk = machine_ticks(), job.server.cpu_seconds(), _children_cpu()
        start = time.monotonic()
        out = subprocess.run(argv, env=run_env, capture_output=True, text=True, check=True)
        took = time.monotonic() - start
        machine_after = machine_ticks()
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
        if line is None:
            raise SystemExit(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
        # How busy the machine's cores were, and with what: whether a figure is bound by
        # the cores (``--workers``) is read here, not guessed.
        busy = (machine_after[0] - machine[0]) / max(machine_after[1] - machine[1], 1)
        ran = [t - server.get(pid, 0.0) for pid, t in job.server.cpu_seconds().items()]
        return {
            **json.loads(line[len("BENCH_JSON ") :]),
            "cores_busy": busy * (os.cpu_count() or 1),
            "server_cores": sum(ran) / took,
            "busiest_process_cores": max(ran) / took,
            "wrk_cores": (_children_cpu() - wrk) / took,
        }

    def batches(
        self, server: Server, key: str, size: int, backfill_days: int = 0
    ) -> dict[str, float]:
        """Batch POSTs of ``size`` memories at c=2, with ``memories_per_s``; runs of at least
        5 s, for requests that take a second or more."""
        env = {
            "BENCH_KEY": key,
            "BENCH_BATCH": str(size),
            "BENCH_BACKFILL_DAYS": str(backfill_days),
        }
        figures = self.wrk(server, "post_batch.lua", 2, env, seconds=max(self.seconds, 5))
        figures["memories_per_s"] = figures["rps"] * size
        return figures


# stores and backends


@dataclass(frozen=True)
class StoreDir:
    """Where a server keeps its memories: SQLite in ``data``, or the database at ``url``."""

    data: Path
    url: str | None

    @property
    def store_url(self) -> str:
        """The URL the loader and the key helper open."""
        return self.url or sqlite_url(self.data)


class Backend:
    """SQLite, or PostgreSQL on a throwaway server: stores to measure in."""

    def __init__(self, name: str, sizes: list[int], cluster: Any = None):
        self.name = name
        self.sizes = sizes
        self.cluster = cluster

    def new_store(self, work: Path, label: str) -> StoreDir:
        """An empty store (and the server's data directory)."""
        data = work / f"{self.name}-{label}"
        data.mkdir()
        return StoreDir(data, self.cluster.new_database() if self.cluster else None)

    @property
    def loader_env(self) -> dict[str, str]:
        """The loader needs no durability: its commits need not wait for the disk."""
        return {"PGOPTIONS": "-c synchronous_commit=off"} if self.cluster else {}


def _children_cpu() -> float:
    """CPU seconds of this process's ended children (each wrk run, once it has ended)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_postgres() -> Any:
    """The tests' throwaway PostgreSQL server, restarted with ``fsync`` on (the tests run
    it off), so that a benchmark's 201 means what it means in production."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from pg import Cluster  # initdb, pg_ctl, a free port

    cluster = Cluster().start()
    if cluster._base is not None:  # not a server named by MEMTRACE_TEST_POSTGRES_URL
        cluster._start_args = [a.replace("fsync=off", "fsync=on") for a in cluster._start_args]
        cluster.pause()
        cluster.resume()
    return cluster


def postgres_settings(url: str) -> dict[str, str]:
    """The server settings that decide what a write costs."""
    import psycopg

    names = ("server_version", "fsync", "synchronous_commit", "shared_buffers")
    with psycopg.connect(url) as conn:
        return {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}


@contextmanager
def running(store: StoreDir, log: Path, workers: int = 1) -> Iterator[Server]:
    """``memtrace serve`` on ``store`` while the block runs."""
    server = serve_memtrace(store.data, log, store.url, workers=workers)
    try:
        if workers > 1:
            time.sleep(2)  # /health answered: one worker is up; give the others time too
        yield server
    finally:
        server.stop()


# floors and ingest


def serve_floor(kind: str, data_dir: Path, work: Path) -> Server:
    """One of the floors of ``bench/floors.py``, logging beside its data directory's name
    (the floors phase and each backend's ingest serve the raw floor, each its own log)."""
    port = free_port()
    argv = [sys.executable, str(HERE / "floors.py"), kind, "--port", str(port)]
    log = work / f"floor-{kind}-{data_dir.name}.log"
    return Server([*argv, "--data-dir", str(data_dir)], port, log)


def floors(bench: Bench, work: Path, conc: list[int]) -> dict[str, Any]:
    """POST and GET figures of the raw and the framework floor."""
    data = work / "floor-data"
    data.mkdir()
    key = create_key(sqlite_url(data), "org_bench")
    env = {"BENCH_KEY": key, "BENCH_PATH": "/api/v1/bench/noop"}
    out: dict[str, Any] = {}
    for kind in ("raw", "framework"):
        server = serve_floor(kind, data, work)
        try:
            with server.sampling() as rss:
                out[kind] = {
                    f"post_c{c}": bench.wrk(server, "post_memory.lua", c, env) for c in conc
                }
                requests = work / "noop.txt"
                requests.write_text("GET\t/api/v1/bench/noop\t\n")
                for c in (1, 32):
                    out[kind][f"get_c{c}"] = bench.wrk(
                        server, "targets.lua", c, {**env, "BENCH_REQUESTS": str(requests)}
                    )
            out[kind]["peak_rss_kb"] = rss["peak_rss_kb"]
        finally:
            server.stop()
        print(f"  floor {kind}: {_brief(out[kind])}", flush=True)
    return out


def ingest(bench: Bench, backend: Backend, work: Path, conc: list[int]) -> dict[str, Any]:
    """Durable single POSTs at each concurrency (one worker, then c=32 with two), batches
    of ``BATCH``, and backfilled batches on an empty store."""
    store = backend.new_store(work, "ingest")
    key = create_key(store.store_url, "org_bench")
    log = work / f"{backend.name}-ingest.log"
    out: dict[str, Any] = {}
    # Two workers on a store of their own, and the raw floor, served at the same time: their
    # runs alternate with one worker's, so that the goals' ratios compare the same minutes.
    pair = backend.new_store(work, "ingest-workers2")
    pair_key = create_key(pair.store_url, "org_bench")
    raw_dir = work / f"{backend.name}-ingest-raw"
    raw_dir.mkdir()
    raw = serve_floor("raw", raw_dir, work)
    try:
        with (
            running(store, log) as server,
            running(pair, work / f"{backend.name}-ingest-workers2.log", workers=2) as workers2,
            server.sampling() as rss,
        ):
            jobs = {
                f"post_c{c}": Job(server, "post_memory.lua", c, {"BENCH_KEY": key}) for c in conc
            }
            jobs["post_c32_workers2"] = Job(
                workers2, "post_memory.lua", 32, {"BENCH_KEY": pair_key}
            )
            jobs["raw_post_c32"] = Job(raw, "post_memory.lua", 32, {"BENCH_KEY": key})
            out.update(bench.interleaved(jobs))
            out["batch"] = bench.batches(server, key, BATCH)
        out["peak_rss_kb"] = rss["peak_rss_kb"]
    finally:
        raw.stop()
    empty = backend.new_store(work, "backfill")
    key = create_key(empty.store_url, "org_bench")
    with running(empty, work / f"{backend.name}-backfill.log") as server:
        out["backfill"] = bench.batches(server, key, BACKFILL_BATCH, BACKFILL_DAYS)
    if backend.name == "sqlite":  # the raw baseline is SQLite's
        out["raw_executemany"] = raw_executemany(
            work / "raw.db", BATCH, rows=max(20_000, BATCH * 40)
        )
    print(f"  {backend.name} ingest: {_brief(out)}", flush=True)
    return out


def raw_executemany(db: Path, batch: int, rows: int) -> dict[str, float]:
    """Memories/s of plain ``executemany`` into the same schema, indexes and settings.

    The rows are those the server stores for the batch benchmark's bodies (same agents,
    sessions, tags, dedup keys, scope tokens), one transaction per ``batch``: the memory
    row, its tag rows, its text and its word-index row (the org's words, with the
    session's previous memory as its context) and its substring-index row. No dedup check, no neighbour lookup (the context
    is kept in a dict), no validation, no HTTP: what SQLite itself allows.
    """
    from memtrace_server.core.dedup import dedup_key
    from memtrace_server.core.ids import new_memory_id
    from memtrace_server.core.text import agent_scope, org_scope, org_words, term_prefix
    from memtrace_server.storage.sqlite import SQLiteStore

    async def migrate() -> None:
        store = SQLiteStore(db)
        await store.open()
        await store.close()

    asyncio.run(migrate())
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    org = "org_bench"
    previous: dict[str, str] = {}  # the last content of each session
    started = time.perf_counter()
    for start in range(0, rows, batch):
        now = time.time_ns()
        items = []
        for n in range(start + 1, start + batch + 1):
            agent, content = (
                f"agent_{n % 50}",
                (
                    f"run raw thread 1 memory {n}: a batch-loaded observation about the customer account"
                ),
            )
            tags = ["bench", f"t{n % 20}"]
            session = f"sess_{n % 400}"
            context = previous.get(session, "")
            previous[session] = content
            items.append(
                (
                    n,
                    new_memory_id(now + n),
                    agent,
                    session,
                    content,
                    json.dumps(tags),
                    dedup_key(agent, "general", content),
                    now + n,
                    f"{org_scope(org)} {agent_scope(org, agent)}",
                    " ".join([*tags, "general"]),
                    tags,
                    context,
                )
            )
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO memories (rid, id, org_id, agent_id, session_id, memory_type, event_type,"
            " content, metadata_json, tags, dedup_key, importance, parent_id, time)"
            f" VALUES (?, ?, '{org}', ?, ?, 'episodic', 'general', ?, NULL, ?, ?, 0, '', ?)",
            [it[:8] for it in items],
        )
        conn.executemany(
            f"INSERT INTO memory_tags (org_id, tag, time, rid) VALUES ('{org}', ?, ?, ?)",
            [(tag, it[7], it[0]) for it in items for tag in it[10]],
        )
        conn.executemany(
            "INSERT INTO memory_text (rid, content, labels, context) VALUES (?, ?, ?, ?)",
            [(it[0], it[4], it[9], it[11]) for it in items],
        )
        prefix = term_prefix(org)
        conn.executemany(
            "INSERT INTO memory_terms (rowid, scope, content, labels, context)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (it[0], it[8], *(org_words(prefix, text) for text in (it[4], it[9], it[11])))
                for it in items
            ],
        )
        conn.executemany(
            "INSERT INTO memories_trigram (rowid, content) VALUES (?, ?)",
            [(it[0], it[4]) for it in items],
        )
        conn.execute("COMMIT")
    took = time.perf_counter() - started
    conn.close()
    return {"rows": rows, "seconds": took, "memories_per_s": rows / took}


# reads


def _scoped(t: dict[str, Any], body: dict[str, Any]) -> str:
    """A search body, for the population's one agent when it has one."""
    return json.dumps({**body, "agent_id": t["agent_id"]} if "agent_id" in t else body)


def _pick(t: dict[str, Any], field: str, i: int) -> Any:
    return t[field][i % len(t[field])]


def _twelve(words: list[str], i: int) -> list[str]:
    """Twelve words of the population's, a long query as a model writes one."""
    start = (12 * i) % max(len(words) - 12, 1)
    return words[start : start + 12]


# The words of the busy agent's labels (``bench/load_data.py``): the tags most of its
# memories carry, and the event types, one to a memory (two of them never meet in one).
LABEL_WORDS = ("support", "billing", "shipping", "general", "observation", "error", "action")


def _labels(i: int) -> str:
    """Three of the busy agent's label words, a query about its own kinds of memories."""
    return " ".join(LABEL_WORDS[(i + k) % len(LABEL_WORDS)] for k in range(3))


READS: dict[str, Callable[[dict[str, Any], int], Request]] = {
    "recall (agent, 24h, 100)": lambda t, i: (
        "GET",
        f"/api/v1/memories?agent_id={_pick(t, 'agents', i)}&since=24h&limit=100",
        "",
    ),
    "get by id": lambda t, i: ("GET", f"/api/v1/memories/{_pick(t, 'memory_ids', i)}", ""),
    "session memories": lambda t, i: (
        "GET",
        f"/api/v1/sessions/{_pick(t, 'sessions', i)}/memories",
        "",
    ),
    "tags AND + 7d": lambda t, i: (
        "POST",
        "/api/v1/search",
        _scoped(t, {"tags": _pick(t, "tag_pairs", i), "since": "7d"}),
    ),
    "content_contains": lambda t, i: (
        "POST",
        "/api/v1/search",
        _scoped(t, {"content_contains": _pick(t, "words", i)}),
    ),
    "ranked query": lambda t, i: (
        "POST",
        "/api/v1/search",
        _scoped(t, {"query": _pick(t, "queries", i), "limit": 20}),
    ),
    "content_contains (2 characters)": lambda t, i: (
        "POST",
        "/api/v1/search",
        _scoped(t, {"content_contains": _pick(t, "words", i)[:2]}),  # no trigram in it
    ),
    "ranked query (12 words)": lambda t, i: (
        "POST",
        "/api/v1/search",
        _scoped(t, {"query": " ".join(_twelve(t["words"], i)), "limit": 20}),
    ),
    "ranked query (common words)": lambda t, i: (
        "POST",
        "/api/v1/search",
        _scoped(t, {"query": _pick(t, "common_queries", i), "limit": 20}),
    ),
    "ranked query (labels)": lambda t, i: (
        "POST",
        "/api/v1/search",
        _scoped(t, {"query": _labels(i), "limit": 20}),
    ),
    "ranked query + 7d": lambda t, i: (
        "POST",
        "/api/v1/search",
        _scoped(t, {"query": _pick(t, "queries", i), "since": "7d", "limit": 20}),
    ),
    "search, no filter": lambda t, i: (
        "POST",
        "/api/v1/search",
        json.dumps({"agent_id": _pick(t, "agents", i)}),
    ),
    "search, metadata user": lambda t, i: (
        "POST",
        "/api/v1/search",
        json.dumps({"metadata": {"user": _pick(t, "users", i)}}),
    ),
    "search, metadata plan+agent": lambda t, i: (
        "POST",
        "/api/v1/search",
        json.dumps({"agent_id": _pick(t, "agents", i), "metadata": {"plan": "pro"}}),
    ),
    "ranked query + metadata": lambda t, i: (
        "POST",
        "/api/v1/search",
        _scoped(t, {"query": _pick(t, "queries", i), "limit": 20, "metadata": {"plan": "pro"}}),
    ),
    "agent stats": lambda t, i: ("GET", f"/api/v1/agents/{_pick(t, 'agents', i)}/stats", ""),
    "session context": lambda t, i: (
        "POST",
        f"/api/v1/sessions/{_pick(t, 'sessions', i)}/context",
        "{}",
    ),
}


@dataclass(frozen=True)
class Population:
    """Whose memories a read table asks for (a population of ``load_data.py``'s targets)."""

    phase: str  # the --only phase that measures it
    title: str  # how the report names its rows
    reads: tuple[str, ...]
    concurrency: tuple[int, ...]


POPULATIONS = {
    "spread": Population(
        "reads",
        "",
        tuple(
            name
            for name in READS
            if name not in ("ranked query (common words)", "ranked query (labels)")
        ),
        (1, 32),
    ),
    "busy": Population(
        "busy",
        "busy agent: ",
        (
            "recall (agent, 24h, 100)",
            "get by id",
            "session memories",
            "session context",
            "tags AND + 7d",
            "content_contains",
            "content_contains (2 characters)",
            "ranked query",
            "ranked query (12 words)",
            "ranked query (common words)",
            "ranked query (labels)",
            "ranked query + 7d",
            "agent stats",
        ),
        (1,),
    ),
}


def grow(backend: Backend, store: StoreDir, size: int, work: Path) -> dict[str, Any]:
    """Grow the store to ``size`` memories; the loader's targets for its reads."""
    targets = work / f"{backend.name}-targets-{size}.json"
    subprocess.run(
        [
            sys.executable,
            str(HERE / "load_data.py"),
            "--store-url",
            store.store_url,
            "--until",
            str(size),
            "--busy-share",
            str(BUSY_SHARE),
            "--targets",
            str(targets),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, **backend.loader_env},
    )
    if store.url:
        analyze(store.url)
    return dict(json.loads(targets.read_text()))


def analyze(url: str) -> None:
    """A grown PostgreSQL store as autovacuum leaves it. Autovacuum analyzes a table only
    after a share of it has changed, and never the partitioned parent: right after a load,
    reads would otherwise be planned from the statistics of a store a tenth the size (or
    none). It also vacuums a table after inserts (PostgreSQL 13+): without that, the first
    reads of each page after the load set its hint bits and write it out, and no index-only
    scan skips the heap. Neither is the steady state a server runs in."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def read_table(
    bench: Bench, server: Server, work: Path, targets: dict[str, Any], pop: Population
) -> dict[str, Any]:
    """Each of the population's reads at each of its concurrencies."""
    jobs = {}
    for index, name in enumerate(pop.reads):
        requests = work / f"requests-{index}.txt"
        requests.write_text("".join("\t".join(READS[name](targets, i)) + "\n" for i in range(1000)))
        env = {"BENCH_KEY": targets["key"], "BENCH_REQUESTS": str(requests)}
        jobs.update({(name, f"c{c}"): Job(server, "targets.lua", c, env) for c in pop.concurrency})
    out: dict[str, Any] = {name: {} for name in pop.reads}
    for (name, c), figures in bench.interleaved(jobs).items():
        out[name][c] = figures
    for name in pop.reads:
        out[name]["rows"] = answer_size(server, targets, name)
    return out


def answer_size(
    server: Server, targets: dict[str, Any], name: str, samples: int = 20
) -> float | None:
    """How many memories the read answers with, on average over ``samples`` of its requests
    (None for reads that answer with something else): a read whose answer grows with the
    store may grow with it."""
    counts = []
    for i in range(samples):
        method, path, body = READS[name](targets, i)
        request = urllib.request.Request(
            server.url + path,
            data=body.encode() if body else None,
            method=method,
            headers={"x-api-key": targets["key"], "content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        found = answer.get("memories", answer.get("results")) if isinstance(answer, dict) else None
        if not isinstance(found, list):
            return None
        counts.append(len(found))
    return sum(counts) / len(counts)


def reads(bench: Bench, backend: Backend, work: Path, only: set[str]) -> dict[str, Any]:
    """At each size in turn: grow the store, then measure it."""
    store = backend.new_store(work, "reads")
    out: dict[str, Any] = {}
    for size in backend.sizes:
        started = time.perf_counter()
        t = grow(backend, store, size, work)
        load = {"load_seconds": time.perf_counter() - started, "loaded": t["added"]}
        disk = {"store_bytes": store_bytes(store), "cache_bytes": [file_cache_bytes()]}
        with running(store, work / f"{backend.name}-reads-{size}.log") as server:
            out[str(size)] = {
                **load,
                **disk,
                **measure_size(bench, server, store, work, t["populations"], only),
            }
            if size == backend.sizes[0] and "reads" in only:
                spread = t["populations"]["spread"]
                out[str(size)]["workers"] = workers_reads(bench, server, store, work, spread)
        out[str(size)]["cache_bytes"].append(file_cache_bytes())
        _print_size(backend.name, size, out[str(size)])
    return out


# Reads that ``--workers 2`` is measured on, against one worker, at the first size.
WORKER_READS = ("get by id", "recall (agent, 24h, 100)", "search, no filter", "ranked query")


def workers_reads(
    bench: Bench, server: Server, store: StoreDir, work: Path, targets: dict[str, Any]
) -> dict[str, dict[str, dict[str, float]]]:
    """``WORKER_READS`` at c=32 from ``server`` (one worker) and from two workers on the
    same store, in the same rounds: what ``--workers`` gives reads (single POSTs are
    measured in the ingest phase)."""
    jobs = {}
    with running(store, work / f"{store.data.name}-workers2.log", workers=2) as two:
        for index, name in enumerate(WORKER_READS):
            requests = work / f"workers-requests-{index}.txt"
            requests.write_text(
                "".join("\t".join(READS[name](targets, i)) + "\n" for i in range(1000))
            )
            env = {"BENCH_KEY": targets["key"], "BENCH_REQUESTS": str(requests)}
            jobs[(name, "one")] = Job(server, "targets.lua", 32, env)
            jobs[(name, "two")] = Job(two, "targets.lua", 32, env)
        figures = bench.interleaved(jobs)
    return {name: {n: figures[(name, n)] for n in ("one", "two")} for name in WORKER_READS}


def workers_lines(res: dict[str, Any]) -> list[str]:
    """The reads of ``workers_reads``: two workers against one."""
    out = []
    for size, phase in res.items():
        if "workers" not in phase:
            continue
        parts = [
            f"{name} {f['two']['rps']:.0f} against {f['one']['rps']:.0f} req/s"
            f" ({goals.ratio(f['two']['rps'], f['one']['rps']):.2f}×; cores busy"
            f" {f['two']['cores_busy']:.2f} against {f['one']['cores_busy']:.2f})"
            for name, f in phase["workers"].items()
        ]
        out += [
            "",
            f"Reads at c=32 at {goals.label(size)} with --workers 2, in the same rounds as one"
            f" worker's: {', '.join(parts)}.",
        ]
    return out


def in_process_reads(
    targets: dict[str, Any], only: set[str]
) -> dict[str, tuple[str, list[Request]]]:
    """The measured populations' reads for ``bench/inprocess.py``, named as in the report:
    each with its key and its first ``IN_PROCESS_REQUESTS`` requests."""
    return {
        f"{pop.title}{name}": (
            targets[label]["key"],
            [READS[name](targets[label], i) for i in range(IN_PROCESS_REQUESTS)],
        )
        for label, pop in POPULATIONS.items()
        if pop.phase in only and label in targets
        for name in pop.reads
    }


def store_bytes(store: StoreDir) -> int:
    """The store's size on disk: its SQLite files, or its PostgreSQL database."""
    if store.url:
        import psycopg

        with psycopg.connect(store.url) as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            return int(row[0]) if row else 0
    return sum(f.stat().st_size for f in store.data.glob("memtrace.db*"))


def file_cache_bytes() -> int | None:
    """How much file data the kernel holds in memory now (``Cached`` of /proc/meminfo):
    a store larger than this is read partly from disk. None where there is no such file."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("Cached:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def measure_size(
    bench: Bench,
    server: Server,
    store: StoreDir,
    work: Path,
    targets: dict[str, Any],
    only: set[str],
) -> dict[str, Any]:
    """The chosen populations' reads and the console pages (with the server's peak RSS),
    the same reads in this process (``bench/inprocess.py``), then the writes: a single POST
    with its dedup check, and backfilled batches (erased again)."""
    out: dict[str, Any] = {}
    spread = targets["spread"]
    with server.sampling() as rss:
        for name, pop in POPULATIONS.items():
            if pop.phase in only and name in targets:
                out[name] = read_table(bench, server, work, targets[name], pop)
        if "reads" in only:
            out["console"] = console_pages.measure(server.url, spread)
    out["peak_rss_kb"] = rss["peak_rss_kb"]
    # Before the writes: PostgreSQL's GIN indexes keep a write's entries in a pending list
    # that every lookup reads until a vacuum, so after them the same reads measured that.
    chosen = in_process_reads(targets, only)
    if chosen:
        out["inprocess"] = inprocess.measure(store.data, store.url, chosen)
    if "reads" in only:
        key = spread["key"]
        writes = {
            "write with dedup check": bench.wrk(server, "post_memory.lua", 1, {"BENCH_KEY": key}),
            "backfill": bench.batches(server, key, BACKFILL_BATCH, BACKFILL_DAYS),
        }
        # Requests wrk left in flight are still committed: wait out the slowest one.
        time.sleep(writes["backfill"]["max_us"] / 1e6 + 0.5)
        out["writes"] = {**writes, "erased": erase_writes(server, key)}
    return out


def erase_writes(server: Server, key: str) -> int:
    """Erase what the writes added (the wrk scripts tag every memory ``bench``), so that
    the store holds what the loader put in; how many memories that was."""
    response = httpx.post(
        server.url + "/api/v1/memories/delete",
        json={"tags": ["bench"]},
        headers={"x-api-key": key},
        timeout=600,
    )
    response.raise_for_status()
    return int(response.json()["deleted"])


def _print_size(backend: str, size: int, phase: dict[str, Any]) -> None:
    rate = goals.ratio(phase["loaded"], phase["load_seconds"])
    print(
        f"  {backend} {goals.label(size)}: grown by {phase['loaded']} memories in"
        f" {phase['load_seconds']:.0f} s ({rate:.0f}/s); peak RSS {phase['peak_rss_kb'] / 1024:.0f} MB",
        flush=True,
    )
    for name in POPULATIONS:
        if name in phase:
            p50s = ", ".join(f"{r} {v['c1']['p50_us'] / 1000:.2f}" for r, v in phase[name].items())
            print(f"    {name} p50 ms: {p50s}", flush=True)
    if "inprocess" in phase:
        p50s = ", ".join(f"{r} {v:.2f}" for r, v in phase["inprocess"].items())
        print(f"    in-process p50 ms: {p50s}", flush=True)
    if "writes" in phase:
        writes = phase["writes"]
        print(
            f"    backfill: {writes['backfill']['memories_per_s']:.0f} memories/s;"
            f" {writes['erased']} memories written at this size erased again",
            flush=True,
        )


def _brief(d: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v['rps']:.0f}/s" for k, v in d.items() if isinstance(v, dict) and "rps" in v
    )


# report


def report(res: dict[str, Any]) -> str:
    """The markdown tables of each backend, then the goals."""
    m = res["machine"]
    lines = [
        f"Machine: {m['cpus']} CPUs, Python {m['python']}; median of {res['runs']} runs of"
        f" {res['seconds']} s each.",
    ]
    lines += floors_report(res)
    for name in ("sqlite", "postgresql"):
        if {"ingest", "reads"} & set(res.get(name, {})):
            lines += ["", f"### {name_of(name, res[name])}"]
            lines += writes_report(res, name) + reads_report(res[name])
    lines += ["", "### Goals", "", *goals.report(res)]
    errors = sum(_errors(res))
    lines += ["", f"Errors and non-2xx responses across all runs: {errors}."]
    return "\n".join(lines)


def name_of(name: str, backend: dict[str, Any]) -> str:
    """The backend's heading, with the server settings that matter."""
    if name == "sqlite":
        return "SQLite (synchronous = FULL)"
    s = backend.get("settings", {})
    return (
        f"PostgreSQL {s.get('server_version', '')} (fsync {s.get('fsync')}, synchronous_commit"
        f" {s.get('synchronous_commit')}, shared_buffers {s.get('shared_buffers')})"
    )


def floors_report(res: dict[str, Any]) -> list[str]:
    """The floors' POSTs, and their GET figures."""
    floor = res.get("floors")
    if not floor:
        return []
    fw, raw = floor["framework"], floor["raw"]
    rows = [
        (f"{kind} floor POST c={c}", c, floor[kind][f"post_c{c}"])
        for kind in ("raw", "framework")
        for c in res["conc"]
    ]
    return [
        "",
        "### Floors",
        "",
        *post_table(rows, floor),
        "",
        f"Framework floor GET c=1 p50 {fw['get_c1']['p50_us'] / 1000:.2f} ms, "
        f"c=32 {fw['get_c32']['rps']:.0f} req/s; raw floor GET c=1 p50"
        f" {raw['get_c1']['p50_us'] / 1000:.2f} ms.",
    ]


def post_table(rows: list[tuple[str, int, dict[str, float]]], floor: Any) -> list[str]:
    """A table of (title, concurrency, figures) POST rows against the floors."""
    lines = [
        "| Writes | req/s | p50 ms | p99 ms | × raw floor | × framework floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for title, c, row in rows:
        ratios = (
            f"{goals.ratio(row['rps'], floor['raw'][f'post_c{c}']['rps']):.2f}"
            f" | {goals.ratio(row['rps'], floor['framework'][f'post_c{c}']['rps']):.2f}"
            if floor
            else "– | –"
        )
        lines.append(
            f"| {title} | {row['rps']:.0f} | {row['p50_us'] / 1000:.2f}"
            f" | {row['p99_us'] / 1000:.2f} | {ratios} |"
        )
    return lines


def writes_report(res: dict[str, Any], backend: str) -> list[str]:
    """Single POSTs against the floors, then batches and backfills."""
    ing = res[backend].get("ingest")
    if not ing:
        return []
    rows = [(f"memory POST c={c}", c, ing[f"post_c{c}"]) for c in res["conc"]]
    rows.append(("memory POST c=32, --workers 2", 32, ing["post_c32_workers2"]))
    b, x = ing["batch"], ing.get("raw_executemany")
    raw_part = (
        f"raw executemany into the same schema: {x['memories_per_s']:.0f}/s"
        f" (ratio {goals.ratio(b['memories_per_s'], x['memories_per_s']):.2f})"
        if x
        else "no raw baseline for this backend"
    )
    workers = goals.ratio(ing["post_c32_workers2"]["rps"], ing["post_c32"]["rps"])
    raw_c32 = ing.get("raw_post_c32")
    same_rounds = (
        f" The raw floor in the same rounds as these POSTs: {raw_c32['rps']:.0f} req/s at c=32"
        f" (memory POST c=32 {goals.ratio(ing['post_c32']['rps'], raw_c32['rps']):.3f}× it)."
        if raw_c32
        else ""
    )
    return [
        "",
        *post_table(rows, res.get("floors")),
        "",
        f"Batch ingest ({BATCH}/request): {b['memories_per_s']:.0f} memories/s; {raw_part}."
        f" Server peak RSS during ingest: {ing['peak_rss_kb'] / 1024:.0f} MB."
        f" Single POST c=32 with --workers 2: {workers:.2f}× one worker.{same_rounds}"
        f"{cores_line(ing, res['machine']['cpus'])}",
        "",
        backfill_line(ing, res[backend].get("reads", {})),
    ]


def cores_line(ing: dict[str, Any], cpus: int) -> str:
    """How busy the machine's cores were during the c=32 POSTs of one worker and of two."""
    one, two = ing["post_c32"], ing["post_c32_workers2"]
    if "cores_busy" not in one:  # a result from before the bench measured it
        return ""

    def busy(run: dict[str, float]) -> str:
        return (
            f"{run['cores_busy']:.2f} (the server's processes {run['server_cores']:.2f}, the"
            f" busiest of them {run['busiest_process_cores']:.2f}; wrk {run['wrk_cores']:.2f})"
        )

    return (
        f" Cores busy of the machine's {cpus} during those POSTs (median of the runs): one"
        f" worker {busy(one)}, two workers {busy(two)}."
    )


def backfill_line(ing: dict[str, Any], reads: dict[str, Any]) -> str:
    """Backfilled batches on an empty store and at each size."""
    empty = ing["backfill"]["memories_per_s"]
    at = [
        f"at {goals.label(s)} {p['writes']['backfill']['memories_per_s']:.0f}/s"
        f" ({goals.ratio(p['writes']['backfill']['memories_per_s'], empty):.2f}×)"
        for s, p in reads.items()
        if "writes" in p
    ]
    return (
        f"Backfilled batch ingest ({BACKFILL_BATCH}/request, times over {BACKFILL_DAYS} days,"
        f" 5,000 sessions, c=2): empty store {empty:.0f} memories/s"
        + (f"; {', '.join(at)}" if at else "")
        + "."
    )


def reads_report(backend: dict[str, Any]) -> list[str]:
    """The reads table: p50 / p95 / p99 and c=32 at each size, and p50 growth."""
    res = backend.get("reads")
    if not res:
        return []
    sizes = list(res)
    first = sizes[0]
    labels = [goals.label(s) for s in sizes]
    head = "| Read | " + " | ".join(f"{lb} p50 / p95 / p99 ms | {lb} c=32 req/s" for lb in labels)
    head += "".join(f" | p50 {lb}/{labels[0]}" for lb in labels[1:])
    lines = [
        "",
        f"Store grown in place: {load_summary(res)}.",
        "",
        disk_summary(res),
        "",
        head + " |",
        "|---" + "|---:" * (3 * len(sizes) - 1) + "|",
    ]
    answers = []
    for title, get in read_rows(res[first]):
        nodes = [get(res[s]) for s in sizes]
        figures = [(node["c1"], node.get("c32")) for node in nodes]
        rows = [node.get("rows") for node in nodes]
        if all(r is not None for r in rows):
            answers.append(f"| {title} | " + " | ".join(f"{r:.1f}" for r in rows) + " |")
        cells = [
            f"{c1['p50_us'] / 1000:.2f} / {c1['p95_us'] / 1000:.2f} / {c1['p99_us'] / 1000:.2f}"
            f" | {_rps(c32)}"
            for c1, c32 in figures
        ]
        first_p50 = figures[0][0]["p50_us"]
        growth = [f"{goals.ratio(c1['p50_us'], first_p50):.2f}" for c1, _ in figures[1:]]
        lines.append(f"| {title} | " + " | ".join(cells + growth) + " |")
    if answers:
        lines += [
            "",
            "Memories in each answer (mean of 20 of the read's requests): a read whose answer"
            " grows with the store is not bounded by it.",
            "",
            "| Read | " + " | ".join(labels) + " |",
            "|---" + "|---:" * len(sizes) + "|",
            *answers,
        ]
    lines += metadata_lines(res)
    lines += workers_lines(res)
    lines += inprocess.report(res)
    rss = ", ".join(f"{goals.label(s)}: {res[s]['peak_rss_kb'] / 1024:.0f} MB" for s in sizes)
    lines += ["", f"Server peak RSS during reads: {rss}."]
    lines += console_pages.report(res)
    return lines


def _rps(figures: dict[str, float] | None) -> str:
    return f"{figures['rps']:.0f}" if figures else "–"


def read_rows(
    phase: dict[str, Any],
) -> Iterator[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]]:
    """(title, a size's phase -> the read's figures: ``c1``, maybe ``c32`` and ``rows``) of
    each row of the reads table."""
    for name, pop in POPULATIONS.items():
        for read in phase.get(name, {}):
            yield pop.title + read, lambda p, name=name, read=read: dict(p[name][read])
    if "writes" in phase:
        yield "write with dedup check", lambda p: {"c1": p["writes"]["write with dedup check"]}


def load_summary(res: dict[str, Any]) -> str:
    """How long each growth step took."""
    return ", ".join(
        f"to {goals.label(s)} (+{p['loaded']}) in {p['load_seconds']:.0f} s"
        f" ({goals.ratio(p['loaded'], p['load_seconds']):.0f}/s)"
        for s, p in res.items()
    )


def disk_summary(res: dict[str, Any]) -> str:
    """Each size's store on disk against the machine's file cache around its reads."""

    def gb(n: int | None) -> str:
        return "?" if n is None else f"{n / 1e9:.1f}"

    sizes = "; ".join(
        f"{goals.label(s)}: store {gb(p.get('store_bytes'))} GB, file cache"
        f" {' → '.join(gb(c) for c in p.get('cache_bytes', [None]))} GB"
        for s, p in res.items()
    )
    return (
        f"Store on disk, and the machine's file cache before and after its reads: {sizes}."
        " A store larger than the cache is read partly from disk, and the reads at that size"
        " measure the disk too."
    )


def metadata_lines(res: dict[str, Any]) -> list[str]:
    """Metadata filters against an unfiltered search, at each size."""
    lines = [""]
    for s, phase in res.items():
        spread = phase.get("spread")
        if not spread:
            continue
        base = spread["search, no filter"]["c1"]["p50_us"]
        ratios = ", ".join(
            f"{name} {goals.ratio(spread[name]['c1']['p50_us'], base):.2f}×"
            for name in ("search, metadata user", "search, metadata plan+agent")
        )
        ranked = goals.ratio(
            spread["ranked query + metadata"]["c1"]["p50_us"],
            spread["ranked query"]["c1"]["p50_us"],
        )
        lines.append(
            f"Metadata filters at {goals.label(s)}, p50 against an unfiltered search of one agent: "
            f"{ratios}; ranked query + metadata {ranked:.2f}× the ranked query."
        )
    return lines


def _errors(node: Any) -> Iterator[float]:
    if isinstance(node, dict):
        if "errors" in node and "non_2xx" in node:
            yield node["errors"] + node["non_2xx"]
        for v in node.values():
            yield from _errors(v)


# main


def arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a minute or two, 10k and 20k")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; --quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds per run (default 5; --quick 1)")
    parser.add_argument(
        "--sizes", help="comma-separated store sizes for the reads (default 100k,1M,3M)"
    )
    parser.add_argument("--pg-sizes", help="PostgreSQL's sizes (default --sizes, else 100k,1M)")
    parser.add_argument("--only", choices=PHASES, action="append", help="run only this phase")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--postgres", action="store_true", help="PostgreSQL only")
    which.add_argument("--sqlite", action="store_true", help="SQLite only")
    return parser.parse_args()


def backend_sizes(args: argparse.Namespace) -> dict[str, list[int]]:
    """The backends to run, each with its store sizes."""
    if args.postgres:
        names = ["postgresql"]
    elif args.sqlite or args.quick:
        names = ["sqlite"]
    else:
        names = ["sqlite", "postgresql"]
    out = {}
    for name in names:
        spec = (args.pg_sizes if name == "postgresql" else None) or args.sizes
        spec = spec or (QUICK_SIZES if args.quick else FULL_SIZES[name])
        out[name] = [int(s) for s in spec.split(",")]
    return out


def main() -> None:
    """Run the phases and report."""
    args = arguments()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required: apt-get install wrk")
    runs = args.runs or (1 if args.quick else 3)
    seconds = args.seconds or (1 if args.quick else 5)
    conc = [1, 8, 32]
    only = set(args.only or PHASES)
    work = Path(tempfile.mkdtemp(prefix="memtrace-bench-"))
    bench = Bench(runs, seconds, work)
    res: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "runs": runs,
        "seconds": seconds,
        "conc": conc,
        "batch": BATCH,
        "busy_share": BUSY_SHARE,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    cluster = None
    try:
        if "floors" in only:
            print("floors", flush=True)
            res["floors"] = floors(bench, work, conc)
        for name, sizes in (backend_sizes(args) if only - {"floors"} else {}).items():
            if name == "postgresql":
                cluster = start_postgres()
            backend = Backend(name, sizes, cluster)
            res[name] = run_backend(bench, backend, work, conc, only)
    finally:
        out_dir = HERE / "results"
        out_dir.mkdir(exist_ok=True)
        out = out_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(res, indent=2))
        shutil.rmtree(work, ignore_errors=True)
        if cluster is not None:
            cluster.stop()
    print()
    print(report(res))
    print(f"\nresults: {out.relative_to(HERE.parent)}")


def run_backend(
    bench: Bench, backend: Backend, work: Path, conc: list[int], only: set[str]
) -> dict[str, Any]:
    """The ingest and read phases on one backend."""
    out: dict[str, Any] = {"sizes": backend.sizes}
    if backend.cluster is not None:
        out["settings"] = postgres_settings(backend.cluster.url)
    if "ingest" in only:
        print(f"{backend.name} ingest", flush=True)
        out["ingest"] = ingest(bench, backend, work, conc)
    if only & {"reads", "busy"}:
        print(f"{backend.name} reads at {', '.join(map(goals.label, backend.sizes))}", flush=True)
        out["reads"] = reads(bench, backend, work, only)
    return out


if __name__ == "__main__":
    main()
