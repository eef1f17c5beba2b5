"""``make soak``: mixed traffic at concurrency 64 against a local server for 10 minutes.

    python bench/soak.py [--seconds 600] [--concurrency 64]

Starts ``memtrace serve`` on a temporary data directory (its own process), stores
``--prefill`` memories and warms up for a minute (so the page caches are full), then reports
requests, errors, latency percentiles and the server's RSS at start, each minute and at end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from server import create_key, serve_memtrace, sqlite_url


async def worker(
    client: httpx.AsyncClient, deadline: float, n: int, stats: dict[str, list[float]]
) -> None:
    """One client loop of mixed requests until the deadline."""
    rng = random.Random(f"{n}-{time.time_ns()}")  # a fresh stream per run: no accidental duplicates
    session = (await client.post("/api/v1/sessions", json={"agent_id": f"soak{n % 16}"})).json()[
        "id"
    ]
    i = 0
    while time.monotonic() < deadline:
        i += 1
        choice = rng.random()
        started = time.perf_counter()
        try:
            if choice < 0.45:
                r = await client.post(
                    "/api/v1/memories",
                    json={
                        "agent_id": f"soak{n % 16}",
                        "session_id": session,
                        "content": f"soak {n} {i} {rng.random()}",
                        "tags": [f"t{rng.randint(0, 20)}"],
                        "importance": rng.random(),
                    },
                )
            elif choice < 0.55:
                r = await client.post(
                    "/api/v1/memories",
                    json={
                        "memories": [
                            {
                                "agent_id": f"soak{n % 16}",
                                "content": f"batch {n} {i} {j} {rng.random()}",
                            }
                            for j in range(20)
                        ]
                    },
                )
            elif choice < 0.75:
                r = await client.get(
                    "/api/v1/memories",
                    params={"agent_id": f"soak{n % 16}", "since": "1h", "limit": 50},
                )
            elif choice < 0.85:
                r = await client.post(
                    "/api/v1/search", json={"query": f"soak {rng.randint(0, 63)}", "limit": 20}
                )
            elif choice < 0.95:
                r = await client.post(
                    f"/api/v1/sessions/{session}/context", json={"max_tokens": 1000}
                )
            else:
                r = await client.get(f"/api/v1/agents/soak{n % 16}/stats")
            ok = r.status_code < 400
            kind = str(r.status_code)
        except httpx.HTTPError as exc:
            ok = False
            kind = type(exc).__name__
        stats["latency"].append((time.perf_counter() - started) * 1000)
        if not ok:
            stats["errors"].append(1.0)
            stats.setdefault(f"error {kind}", []).append(1.0)


async def run(
    url: str,
    key: str,
    seconds: float,
    concurrency: int,
    every_minute: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Drive ``concurrency`` clients for ``seconds``; call ``every_minute`` meanwhile."""
    stats: dict[str, list[float]] = {"latency": [], "errors": []}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers={"x-api-key": key}, timeout=60, limits=limits
    ) as client:
        deadline = time.monotonic() + seconds

        async def tick() -> None:
            while every_minute is not None and time.monotonic() + 60 < deadline:
                await asyncio.sleep(60)
                every_minute()

        await asyncio.gather(
            tick(), *(worker(client, deadline, n, stats) for n in range(concurrency))
        )
    return stats


async def prefill(url: str, key: str, count: int) -> None:
    """Store ``count`` memories in batches of 500 across the soak's agents."""
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": key}, timeout=120) as client:
        for start in range(0, count, 500):
            body = [
                {
                    "agent_id": f"soak{n % 16}",
                    "content": f"prefill {n}: "
                    + " ".join(f"w{(n * 7 + k) % 997}" for k in range(30)),
                    "tags": [f"t{n % 21}"],
                }
                for n in range(start, min(start + 500, count))
            ]
            r = await client.post("/api/v1/memories", json={"memories": body})
            r.raise_for_status()


def main() -> None:
    """Start a server, soak it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--prefill", type=int, default=100_000, help="memories stored first")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="memtrace-soak-"))
    key = create_key(sqlite_url(data), "org_soak")
    log_path = data / "server.log"
    server = serve_memtrace(data, log_path, env={"MEMTRACE_LOG_LEVEL": "warn"})
    url = server.url
    try:
        # Fill the store past what the page caches hold (5 connections x 16 MiB), then warm
        # up, so RSS growth during the soak measures leaks rather than caches filling.
        asyncio.run(prefill(url, key, args.prefill))
        asyncio.run(run(url, key, min(60.0, args.seconds), args.concurrency))
        start_rss = server.rss_mb()
        samples: list[float] = []
        stats = asyncio.run(
            run(url, key, args.seconds, args.concurrency, lambda: samples.append(server.rss_mb()))
        )
        end_rss = server.rss_mb()
    finally:
        server.stop()
    lat = sorted(stats["latency"])
    print(f"server log (warnings and errors): {log_path}")
    print(
        f"requests {len(lat)} in {args.seconds:.0f} s at concurrency {args.concurrency}"
        f" ({len(lat) / args.seconds:.0f}/s); errors {len(stats['errors'])}"
    )
    kinds = [f"{name[6:]} x{len(v)}" for name, v in stats.items() if name.startswith("error ")]
    print("errors by kind: " + (", ".join(kinds) or "none"))
    print(
        f"latency ms: p50 {statistics.median(lat):.1f}, p95 {lat[int(len(lat) * 0.95)]:.1f},"
        f" p99 {lat[int(len(lat) * 0.99)]:.1f}"
    )
    print(
        f"server RSS MB: start {start_rss:.1f}, end {end_rss:.1f}, growth {100 * (end_rss / start_rss - 1):.1f} %"
    )
    print("server RSS MB each minute: " + ", ".join(f"{mb:.1f}" for mb in samples))


if __name__ == "__main__":
    main()
