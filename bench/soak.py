"""``make soak``: mixed traffic at concurrency 64 against a local server for 10 minutes.

    python bench/soak.py [--seconds 600] [--concurrency 64]

Starts ``memtrace serve`` on a temporary data directory (its own process) and reports
requests, errors, latency percentiles and the server's RSS at start and end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


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


async def run(url: str, key: str, seconds: float, concurrency: int) -> dict[str, list[float]]:
    """Drive ``concurrency`` clients for ``seconds``."""
    stats: dict[str, list[float]] = {"latency": [], "errors": []}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers={"x-api-key": key}, timeout=60, limits=limits
    ) as client:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(worker(client, deadline, n, stats) for n in range(concurrency)))
    return stats


def main() -> None:
    """Start a server, soak it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="memtrace-soak-"))
    binary = Path(sys.executable).parent / "memtrace"
    port = 9700 + os.getpid() % 200
    env = {**os.environ, "MEMTRACE_LOG_LEVEL": "warn"}
    log_path = data / "server.log"
    server = subprocess.Popen(
        [str(binary), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("w"),
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        key = subprocess.run(
            [
                str(binary),
                "key",
                "create",
                "--org",
                "org_default",
                "--name",
                "soak",
                "--data-dir",
                str(data),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        # Warm up until the store's page caches are full, so RSS growth measures leaks.
        asyncio.run(run(url, key, min(60.0, args.seconds), args.concurrency))
        start_rss = rss_mb(server.pid)
        stats = asyncio.run(run(url, key, args.seconds, args.concurrency))
        end_rss = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
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


if __name__ == "__main__":
    main()
