"""The goals of the growth work (issue 18), checked against one ``bench/run.py`` result.

Each goal names a store size (1M, 3M). When a run did not measure that size (``--quick``,
``--sizes``), the goal is checked at the nearest size measured and says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

LIGHT = ("recall (agent, 24h, 100)", "get by id", "session context", "session memories")
HEAVY = ("ranked query", "tags AND + 7d", "agent stats", "content_contains")
# The busy agent's goal holds "whatever words the query uses": its long and common ones, and
# the words of its labels (two event types never meet in a memory).
ANY_WORDS = ("ranked query (12 words)", "ranked query (common words)", "ranked query (labels)")
POPULATIONS = ("spread", "busy")


def ratio(a: float, b: float) -> float:
    """a / b; NaN (which meets no goal) when b is 0: a run too short to count anything."""
    return a / b if b else math.nan


def label(size: int | str) -> str:
    """100000 → 100k, 3000000 → 3M."""
    n = int(size)
    if n >= 1_000_000:
        return f"{n / 1_000_000:g}M"
    return f"{n / 1000:g}k" if n >= 1000 else str(n)


@dataclass(frozen=True)
class Check:
    """One goal: what was measured, and whether it was met (None: not measured)."""

    goal: str
    measured: str = "not measured"
    ok: bool | None = None
    note: str = ""

    @property
    def status(self) -> str:
        """pass, MISS or n/a, with the note."""
        word = "n/a" if self.ok is None else "pass" if self.ok else "MISS"
        return f"{word} ({self.note})" if self.note and self.ok is not None else word


def report(res: dict[str, Any]) -> list[str]:
    """A markdown table: each goal, the figure measured, pass or miss."""
    lines = ["| Goal | Measured | |", "|---|---|---|"]
    lines += [f"| {c.goal} | {c.measured} | {c.status} |" for c in checks(res)]
    return lines


def checks(res: dict[str, Any]) -> list[Check]:
    """Every goal, in the issue's order."""
    sq, pg = res.get("sqlite", {}), res.get("postgresql", {})
    reads = sq.get("reads", {})
    return [
        post_vs_raw(res),
        workers(sq.get("ingest"), res.get("machine", {}).get("cpus")),
        batch_vs_raw(sq.get("ingest")),
        latency(reads, 1_000_000, "spread", LIGHT, 1, "SQLite 1M c=1 p50 ≤ 1 ms:"),
        latency(reads, 1_000_000, "busy", LIGHT, 1, "SQLite 1M c=1 p50 ≤ 1 ms, busy agent:"),
        latency(reads, 1_000_000, "spread", HEAVY, 3, "SQLite 1M c=1 p50 ≤ 3 ms:"),
        latency(
            reads,
            1_000_000,
            "busy",
            HEAVY + ANY_WORDS,
            25,
            "SQLite 1M c=1 p50 ≤ 25 ms, busy agent:",
        ),
        growth(reads, 100_000, 3_000_000, 1.5, "SQLite p50 growth 100k → 3M ≤ 1.5×, every read"),
        backfill(sq),
        rss(reads, 3_000_000, 300),
        growth(
            pg.get("reads", {}), 100_000, 1_000_000, 2, "PostgreSQL p50 1M ≤ 2× 100k, every read"
        ),
        post_rate(pg.get("ingest"), 1500),
    ]


def post_vs_raw(res: dict[str, Any]) -> Check:
    """Single POST c=32 against the raw floor."""
    goal = "SQLite single POST c=32 ≥ 0.10× the raw floor"
    ingest, floors = res.get("sqlite", {}).get("ingest"), res.get("floors")
    # The raw floor served in the same rounds as the POSTs, else the floors phase's.
    raw_run = (ingest or {}).get("raw_post_c32") or (floors or {}).get("raw", {}).get("post_c32")
    if not ingest or not raw_run:
        return Check(goal)
    post, raw = ingest["post_c32"]["rps"], raw_run["rps"]
    r = ratio(post, raw)
    return Check(goal, f"{r:.3f}× ({post:.0f} of {raw:.0f} req/s)", r >= 0.10)


def workers(ingest: dict[str, Any] | None, cpus: int | None = None) -> Check:
    """Two server processes against one."""
    goal = "SQLite single POST c=32 with --workers 2 ≥ 1.4× one worker"
    if not ingest:
        return Check(goal)
    one, two = ingest["post_c32"]["rps"], ingest["post_c32_workers2"]["rps"]
    r = ratio(two, one)
    # What bounds one worker: the machine's cores, one of its processes, or neither.
    run = ingest["post_c32"]
    cores = (
        f"; one worker's POSTs kept {run['cores_busy']:.2f} of {cpus} cores busy, its busiest"
        f" process {run['busiest_process_cores']:.2f}"
        if "busiest_process_cores" in run
        else ""
    )
    return Check(goal, f"{r:.2f}× ({two:.0f} against {one:.0f} req/s{cores})", r >= 1.4)


def batch_vs_raw(ingest: dict[str, Any] | None) -> Check:
    """Batch ingest against SQLite's own executemany."""
    goal = "SQLite batch ingest ≥ 0.4× raw executemany"
    if not ingest or "raw_executemany" not in ingest:
        return Check(goal)
    ours, raw = ingest["batch"]["memories_per_s"], ingest["raw_executemany"]["memories_per_s"]
    r = ratio(ours, raw)
    return Check(goal, f"{r:.2f}× ({ours:.0f} of {raw:.0f} memories/s)", r >= 0.4)


def latency(
    reads: dict[str, Any],
    size: int,
    population: str,
    names: tuple[str, ...],
    limit: float,
    goal: str,
) -> Check:
    """Each of ``names`` of ``population`` at ``size``: c=1 p50 within ``limit`` ms."""
    goal = f"{goal} {', '.join(names)}"
    key, note = nearest(reads, size)
    table = reads.get(key, {}).get(population)
    if not table:
        return Check(goal)
    p50 = {n: table[n]["c1"]["p50_us"] / 1000 for n in names if n in table}
    measured = ", ".join(f"{n} {v:.2f}" for n, v in p50.items()) + " ms"
    return Check(goal, measured, all(v <= limit for v in p50.values()), note)


def growth(reads: dict[str, Any], first: int, last: int, limit: float, goal: str) -> Check:
    """Every read's p50 at ``last`` over its p50 at ``first``, within ``limit``."""
    a, note_a = nearest(reads, first, earliest=True)
    b, note_b = nearest(reads, last)
    if not reads or a == b:
        return Check(goal)
    ratios = {t: ratio(fig(reads[b]), fig(reads[a])) for t, fig in p50_rows(reads[a], reads[b])}
    if not ratios:
        return Check(goal)
    worst = max(ratios, key=ratios.__getitem__)
    over = sum(not r <= limit for r in ratios.values())  # NaN: over
    measured = f"worst: {worst} {ratios[worst]:.2f}×; {over} of {len(ratios)} reads over {limit:g}×"
    note = f"{label(a)} → {label(b)}" if note_a or note_b else ""
    return Check(goal, measured, over == 0, note)


def p50_rows(*phases: dict[str, Any]) -> Iterator[tuple[str, Callable[[dict[str, Any]], float]]]:
    """(title, p50 of a phase) of every read measured in all ``phases``."""
    for pop in POPULATIONS:
        for read in phases[0].get(pop, {}):
            if all(read in p.get(pop, {}) for p in phases):
                title = f"busy agent: {read}" if pop == "busy" else read
                yield title, lambda p, pop=pop, read=read: p[pop][read]["c1"]["p50_us"]


def backfill(backend: dict[str, Any]) -> Check:
    """Backfilled batches at 1M against an empty store."""
    goal = "SQLite backfilled batch ingest at 1M ≥ 0.5× an empty store"
    reads, ingest = backend.get("reads", {}), backend.get("ingest")
    key, note = nearest(reads, 1_000_000)
    writes = reads.get(key, {}).get("writes")
    if not ingest or not writes:
        return Check(goal)
    empty, full = ingest["backfill"]["memories_per_s"], writes["backfill"]["memories_per_s"]
    r = ratio(full, empty)
    measured = f"{r:.2f}× ({full:.0f} against {empty:.0f} memories/s)"
    return Check(goal, measured, r >= 0.5, note)


def rss(reads: dict[str, Any], size: int, limit_mb: float) -> Check:
    """The server's peak RSS during the reads at ``size``."""
    goal = f"SQLite server peak RSS during reads at {label(size)} ≤ {limit_mb:g} MB"
    key, note = nearest(reads, size)
    if key not in reads:
        return Check(goal)
    mb = reads[key]["peak_rss_kb"] / 1024
    return Check(goal, f"{mb:.0f} MB", mb <= limit_mb, note)


def post_rate(ingest: dict[str, Any] | None, floor: float) -> Check:
    """Single POST c=32 in requests per second."""
    goal = f"PostgreSQL single POST c=32 ≥ {floor:g} req/s"
    if not ingest:
        return Check(goal)
    rps = ingest["post_c32"]["rps"]
    return Check(goal, f"{rps:.0f} req/s", rps >= floor)


def nearest(reads: dict[str, Any], size: int, earliest: bool = False) -> tuple[str, str]:
    """The key of ``size`` in ``reads``, else of the largest (``earliest``: smallest) size
    measured, with a note saying so."""
    if str(size) in reads or not reads:
        return str(size), ""
    key = list(reads)[0 if earliest else -1]
    return key, f"at {label(key)}, not {label(size)}"
