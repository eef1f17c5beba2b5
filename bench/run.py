"""``make bench``: Memtrace against the floor of its own stack, measured in one run.

    python bench/run.py            # full: floors, ingest, reads at 100k and 1M (~20 min)
    python bench/run.py --quick    # about a minute: one short run of each, reads at 10k

Every server is its own process (``memtrace serve`` and the two floors in
``bench/floors.py``, all with the same uvicorn settings) driven over loopback by ``wrk``
(Debian package ``wrk``) with the Lua scripts in ``bench/wrk``. Each figure is the median
of ``--runs`` runs; ratios compare figures of this same run. Prints a markdown table and
writes JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import console_pages
from server import Server, create_key, free_port, serve_memtrace, sqlite_url

HERE = Path(__file__).resolve().parent
WRK_DIR = HERE / "wrk"


class Bench:
    """Runs wrk and keeps medians."""

    def __init__(self, runs: int, seconds: float, work: Path):
        self.runs = runs
        self.seconds = seconds
        self.work = work

    def wrk(
        self, server: Server, script: str, connections: int, env: dict[str, str], path: str = "/"
    ) -> dict[str, float]:
        """Median figures of ``runs`` wrk runs of ``script`` at ``connections``."""
        results = []
        for _ in range(self.runs):
            argv = [
                "wrk",
                f"-t{min(2, connections)}",
                f"-c{connections}",
                f"-d{self.seconds:g}s",
                "--timeout",
                "10s",
                "-s",
                str(WRK_DIR / script),
                server.url + path,
            ]
            run_env = {
                **os.environ,
                "BENCH_DIR": str(WRK_DIR),
                "BENCH_NONCE": uuid.uuid4().hex[:12],
                **env,
            }
            out = subprocess.run(argv, env=run_env, capture_output=True, text=True, check=True)
            line = next(
                (ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None
            )
            if line is None:
                raise SystemExit(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
            results.append(json.loads(line[len("BENCH_JSON ") :]))
        return {k: statistics.median(r[k] for r in results) for k in results[0]}


def serve_floor(kind: str, data_dir: Path, work: Path) -> Server:
    """One of the floors of ``bench/floors.py``."""
    port = free_port()
    argv = [sys.executable, str(HERE / "floors.py"), kind, "--port", str(port)]
    return Server([*argv, "--data-dir", str(data_dir)], port, work / f"floor-{kind}.log")


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


def ingest(
    bench: Bench, work: Path, conc: list[int], batch: int, store_url: str | None
) -> dict[str, Any]:
    """Batches of 1000 backfilled memories on the empty store (``backfill``), then durable
    single-memory POSTs at each concurrency, then batches of ``batch``."""
    data = work / "ingest-data"
    data.mkdir()
    key = create_key(store_url or sqlite_url(data), "org_bench")
    server = serve_memtrace(data, work / "ingest.log", store_url)
    out: dict[str, Any] = {}
    try:
        with server.sampling() as rss:
            out["backfill"] = backfill(bench, server, key)
            for c in conc:
                out[f"post_c{c}"] = bench.wrk(server, "post_memory.lua", c, {"BENCH_KEY": key})
            figures = bench.wrk(
                server, "post_batch.lua", 2, {"BENCH_KEY": key, "BENCH_BATCH": str(batch)}
            )
            figures["memories_per_s"] = figures["rps"] * batch
            out["batch"] = figures
        out["peak_rss_kb"] = rss["peak_rss_kb"]
    finally:
        server.stop()
    if store_url is None:  # the raw baseline is SQLite's
        out["raw_executemany"] = raw_executemany(
            work / "raw.db", batch, rows=max(20_000, batch * 40)
        )
    print(f"  ingest: {_brief(out)}", flush=True)
    return out


def backfill(bench: Bench, server: Server, key: str) -> dict[str, float]:
    """Batches of 1000 memories with times spread over the last 60 days, one at a time."""
    return bench.wrk(server, "post_backfill.lua", 1, {"BENCH_KEY": key, "BENCH_BATCH": "1000"})


def raw_executemany(db: Path, batch: int, rows: int) -> dict[str, float]:
    """Memories/s of plain ``executemany`` into the same schema, indexes and settings.

    The rows are those the server stores for the batch benchmark's bodies (same agents,
    sessions, tags, dedup keys, scope tokens), one transaction per ``batch``: the memory
    row, its tag rows and its full-text row. No dedup check, no neighbour lookup, no
    validation, no HTTP: what SQLite itself allows.
    """
    from memtrace_server.core.dedup import dedup_key
    from memtrace_server.core.ids import new_memory_id
    from memtrace_server.core.text import agent_scope, org_scope
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
            items.append(
                (
                    n,
                    new_memory_id(now + n),
                    agent,
                    f"sess_{n % 400}",
                    content,
                    json.dumps(tags),
                    dedup_key(agent, "general", content),
                    now + n,
                    f"{org_scope(org)} {agent_scope(org, agent)}",
                    " ".join([*tags, "general"]),
                    tags,
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
            "INSERT INTO memories_fts (rowid, scope, content, labels, context)"
            " VALUES (?, ?, ?, ?, '')",
            [(it[0], it[8], it[4], it[9]) for it in items],
        )
        conn.execute("COMMIT")
    took = time.perf_counter() - started
    conn.close()
    return {"rows": rows, "seconds": took, "memories_per_s": rows / took}


READS = {
    "recall (agent, 24h, 100)": lambda t, i: (
        "GET",
        f"/api/v1/memories?agent_id={t['agents'][i % len(t['agents'])]}&since=24h&limit=100",
        "",
    ),
    "get by id": lambda t, i: (
        "GET",
        f"/api/v1/memories/{t['memory_ids'][i % len(t['memory_ids'])]}",
        "",
    ),
    "session memories": lambda t, i: (
        "GET",
        f"/api/v1/sessions/{t['sessions'][i % len(t['sessions'])]}/memories",
        "",
    ),
    "tags AND + 7d": lambda t, i: (
        "POST",
        "/api/v1/search",
        json.dumps({"tags": t["tag_pairs"][i % len(t["tag_pairs"])], "since": "7d"}),
    ),
    "content_contains": lambda t, i: (
        "POST",
        "/api/v1/search",
        json.dumps({"content_contains": t["words"][i % len(t["words"])]}),
    ),
    "ranked query": lambda t, i: (
        "POST",
        "/api/v1/search",
        json.dumps({"query": " ".join(t["words"][i % 490 : i % 490 + 3]), "limit": 20}),
    ),
    "search, no filter": lambda t, i: (
        "POST",
        "/api/v1/search",
        json.dumps({"agent_id": t["agents"][i % len(t["agents"])]}),
    ),
    "search, metadata user": lambda t, i: (
        "POST",
        "/api/v1/search",
        json.dumps({"metadata": {"user": t["users"][i % len(t["users"])]}}),
    ),
    "search, metadata plan+agent": lambda t, i: (
        "POST",
        "/api/v1/search",
        json.dumps({"agent_id": t["agents"][i % len(t["agents"])], "metadata": {"plan": "pro"}}),
    ),
    "ranked query + metadata": lambda t, i: (
        "POST",
        "/api/v1/search",
        json.dumps(
            {
                "query": " ".join(t["words"][i % 490 : i % 490 + 3]),
                "limit": 20,
                "metadata": {"plan": "pro"},
            }
        ),
    ),
    "agent stats": lambda t, i: (
        "GET",
        f"/api/v1/agents/{t['agents'][i % len(t['agents'])]}/stats",
        "",
    ),
    "session context": lambda t, i: (
        "POST",
        f"/api/v1/sessions/{t['sessions'][i % len(t['sessions'])]}/context",
        "{}",
    ),
}


def reads(bench: Bench, work: Path, sizes: list[int], store_url: str | None) -> dict[str, Any]:
    """Each read at c=1 (latency) and c=32 (throughput), after loading each size in turn."""
    data = work / "read-data"
    data.mkdir()
    url = store_url or sqlite_url(data)
    out: dict[str, Any] = {}
    loaded = 0
    for size in sizes:
        targets = work / f"targets-{size}.json"
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                str(HERE / "load_data.py"),
                "--store-url",
                url,
                "--count",
                str(size - loaded),
                "--targets",
                str(targets),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        loaded = size
        t = json.loads(targets.read_text())
        phase: dict[str, Any] = {"load_seconds": time.perf_counter() - started}
        server = serve_memtrace(data, work / f"reads-{size}.log", store_url)
        try:
            with server.sampling() as rss:
                for name, build in READS.items():
                    requests = work / "requests.txt"
                    requests.write_text("".join("\t".join(build(t, i)) + "\n" for i in range(1000)))
                    env = {"BENCH_KEY": t["key"], "BENCH_REQUESTS": str(requests)}
                    phase[name] = {
                        "c1": bench.wrk(server, "targets.lua", 1, env),
                        "c32": bench.wrk(server, "targets.lua", 32, env),
                    }
                phase["write with dedup check"] = {
                    "c1": bench.wrk(server, "post_memory.lua", 1, {"BENCH_KEY": t["key"]})
                }
                phase["backfill"] = backfill(bench, server, t["key"])
                phase["console"] = console_pages.measure(server.url, t)
            phase["peak_rss_kb"] = rss["peak_rss_kb"]
        finally:
            server.stop()
        out[str(size)] = phase
        print(
            f"  reads at {size}: loaded in {phase['load_seconds']:.0f} s;"
            f" backfilled batch p50 {phase['backfill']['p50_us'] / 1000:.0f} ms",
            flush=True,
        )
    return out


def _brief(d: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v['rps']:.0f}/s" for k, v in d.items() if isinstance(v, dict) and "rps" in v
    )


def report(res: dict[str, Any]) -> str:
    """The markdown tables."""
    raw, fw = res["floors"]["raw"], res["floors"]["framework"]
    ing = res["ingest"]
    lines = [
        f"Backend: {res['backend']}. Machine: {res['machine']['cpus']} CPUs, Python {res['machine']['python']}; "
        f"median of {res['runs']} runs of {res['seconds']} s each.",
        "",
        "| Writes | req/s | p50 ms | p99 ms | × raw floor | × framework floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, row in (
        [(f"raw floor POST c={c}", raw[f"post_c{c}"]) for c in res["conc"]]
        + [(f"framework floor POST c={c}", fw[f"post_c{c}"]) for c in res["conc"]]
        + [(f"memory POST c={c}", ing[f"post_c{c}"]) for c in res["conc"]]
    ):
        c = key.rsplit("=", 1)[1]
        lines.append(
            f"| {key} | {row['rps']:.0f} | {row['p50_us'] / 1000:.2f} | {row['p99_us'] / 1000:.2f}"
            f" | {row['rps'] / raw[f'post_c{c}']['rps']:.2f} | {row['rps'] / fw[f'post_c{c}']['rps']:.2f} |"
        )
    b, x = ing["batch"], ing.get("raw_executemany")
    raw_part = (
        f"raw executemany into the same schema: {x['memories_per_s']:.0f}/s "
        f"(ratio {b['memories_per_s'] / x['memories_per_s']:.2f})"
        if x
        else "no raw baseline for this backend"
    )
    empty = ing["backfill"]["p50_us"]
    grown = ", ".join(
        f"{int(s) // 1000}k {res['reads'][s]['backfill']['p50_us'] / 1000:.0f} ms"
        f" ({empty / res['reads'][s]['backfill']['p50_us']:.2f}× the empty store's rate)"
        for s in res["reads"]
    )
    lines += [
        "",
        f"Batch ingest ({res['batch']}/request): {b['memories_per_s']:.0f} memories/s; "
        f"{raw_part}. Server peak RSS during ingest: {ing['peak_rss_kb'] / 1024:.0f} MB.",
        "",
        f"Backfilled batches (1000 memories over 60 days per request, c=1), p50: empty store "
        f"{empty / 1000:.0f} ms; {grown}.",
        "",
        f"Framework floor GET c=1 p50 {fw['get_c1']['p50_us'] / 1000:.2f} ms, "
        f"c=32 {fw['get_c32']['rps']:.0f} req/s; raw floor GET c=1 p50 {raw['get_c1']['p50_us'] / 1000:.2f} ms.",
        "",
    ]
    sizes = list(res["reads"])
    head = "| Read | " + " | ".join(
        f"{int(s) // 1000}k p50 / p95 / p99 ms | {int(s) // 1000}k c=32 req/s | {int(s) // 1000}k p50 × floor"
        for s in sizes
    )
    if len(sizes) > 1:
        head += f" | growth p50 {int(sizes[-1]) // 1000}k/{int(sizes[0]) // 1000}k"
    lines += [head + " |", "|---" + "|---:" * (3 * len(sizes) + (len(sizes) > 1)) + "|"]
    floor_p50 = fw["get_c1"]["p50_us"]
    for name in [*READS, "write with dedup check"]:
        cells = []
        for s in sizes:
            r = res["reads"][s][name]
            c1 = r["c1"]
            c32 = f"{r['c32']['rps']:.0f}" if "c32" in r else "–"
            cells.append(
                f"{c1['p50_us'] / 1000:.2f} / {c1['p95_us'] / 1000:.2f} / {c1['p99_us'] / 1000:.2f}"
                f" | {c32} | {c1['p50_us'] / floor_p50:.2f}"
            )
        row = f"| {name} | " + " | ".join(cells)
        if len(sizes) > 1:
            first, last = res["reads"][sizes[0]][name], res["reads"][sizes[-1]][name]
            row += f" | {last['c1']['p50_us'] / first['c1']['p50_us']:.2f}"
        lines.append(row + " |")
    lines.append("")
    for s in sizes:
        phase = res["reads"][s]
        base = phase["search, no filter"]["c1"]["p50_us"]
        ratios = ", ".join(
            f"{name} {phase[name]['c1']['p50_us'] / base:.2f}×"
            for name in ("search, metadata user", "search, metadata plan+agent")
        )
        ranked = (
            phase["ranked query + metadata"]["c1"]["p50_us"] / phase["ranked query"]["c1"]["p50_us"]
        )
        lines.append(
            f"Metadata filters at {int(s) // 1000}k, p50 against an unfiltered search of one agent: "
            f"{ratios}; ranked query + metadata {ranked:.2f}× the ranked query."
        )
    lines.append("")
    lines.append(
        "Server peak RSS during reads: "
        + ", ".join(
            f"{int(s) // 1000}k: {res['reads'][s]['peak_rss_kb'] / 1024:.0f} MB" for s in sizes
        )
        + "."
    )
    lines += console_pages.report(res["reads"])
    errors = sum(_errors(res))
    lines.append(f"Errors and non-2xx responses across all runs: {errors}.")
    return "\n".join(lines)


def _errors(node: Any) -> Iterator[float]:
    if isinstance(node, dict):
        if "errors" in node and "non_2xx" in node:
            yield node["errors"] + node["non_2xx"]
        for v in node.values():
            yield from _errors(v)


def main() -> None:
    """Run the phases and report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="about a minute, 10k memories")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--sizes", help="comma-separated store sizes for the reads")
    parser.add_argument("--only", choices=("floors", "ingest", "reads"), action="append")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="run ingest and reads on a throwaway PostgreSQL server (initdb must be installed)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required: apt-get install wrk")
    runs = args.runs or (1 if args.quick else 3)
    seconds = args.seconds or (2 if args.quick else 5)
    sizes = [
        int(s) for s in (args.sizes or ("10000" if args.quick else "100000,1000000")).split(",")
    ]
    conc = [1, 8, 32]
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
        "batch": 500,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    only = set(args.only or ("floors", "ingest", "reads"))
    cluster = None
    store_url = None
    if args.postgres:
        sys.path.insert(0, str(HERE.parent / "tests"))
        from pg import Cluster  # the tests' throwaway server: initdb, pg_ctl, a free port

        cluster = Cluster().start()
        store_url = cluster.new_database()
        res["backend"] = "postgresql"
    else:
        res["backend"] = "sqlite"
    try:
        print("floors", flush=True)
        res["floors"] = floors(bench, work, conc)
        if "ingest" in only:
            print("ingest", flush=True)
            res["ingest"] = ingest(bench, work, conc, 500, store_url)
        if "reads" in only:
            print("reads", flush=True)
            res["reads"] = reads(bench, work, sizes, store_url)
    finally:
        out_dir = HERE / "results"
        out_dir.mkdir(exist_ok=True)
        out = out_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(res, indent=2))
        shutil.rmtree(work, ignore_errors=True)
        if cluster is not None:
            cluster.stop()
    if {"ingest", "reads"} <= only:
        print()
        print(report(res))
    print(f"\nresults: {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
