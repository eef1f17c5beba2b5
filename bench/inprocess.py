"""The bench's reads in the bench's own process, through the app: no HTTP, no wrk.

Used by ``bench/run.py`` after the reads over loopback, on the same store. Each request is
made once to warm the pages it reads, then ``rounds`` rounds of the same requests, every read
once a round; the figure is each read's median. Beside the figures over loopback it tells
what grows with the store from what grows with the disk: a store larger than the machine's
file cache is read partly from disk, and over HTTP a read's first requests pay for it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from goals import label, ratio

Request = tuple[str, str, str]  # method, path with its query, body


async def _call(app: Any, key: str, request: Request) -> None:
    method, target, body = request
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"x-api-key", key.encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body.encode(), "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    if not status or status[0] >= 300:
        raise SystemExit(f"in-process read answered {status}: {method} {target}")


async def _measure(
    data: Path, store_url: str | None, reads: dict[str, tuple[str, list[Request]]], rounds: int
) -> dict[str, float]:
    from memtrace_server.api.app import create_app
    from memtrace_server.config import load_settings

    env = {"MEMTRACE_LOG_LEVEL": "warning"}
    if store_url:
        env["MEMTRACE_STORE_URL"] = store_url
    app = create_app(load_settings(env=env, data_dir=data))
    times: dict[str, list[float]] = {name: [] for name in reads}
    async with app.router.lifespan_context(app):
        for key, requests in reads.values():
            for request in requests:
                await _call(app, key, request)
        for _ in range(rounds):
            for name, (key, requests) in reads.items():
                for request in requests:
                    started = time.perf_counter()
                    await _call(app, key, request)
                    times[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(ms) for name, ms in times.items()}


def measure(
    data: Path,
    store_url: str | None,
    reads: dict[str, tuple[str, list[Request]]],
    rounds: int = 3,
) -> dict[str, float]:
    """p50 in milliseconds of each read (its name: the targets' key and its requests), made
    in this process through the app on the store in ``data`` (or at ``store_url``)."""
    return asyncio.run(_measure(data, store_url, reads, rounds))


def report(res: dict[str, Any]) -> list[str]:
    """The in-process table of a backend's reads: p50 at each size and growth from the first."""
    sizes = [s for s in res if "inprocess" in res[s]]
    if not sizes:
        return []
    names = list(res[sizes[0]]["inprocess"])
    labels = [label(s) for s in sizes]
    lines = [
        "",
        "The same reads in the bench's process, through the app with no HTTP, on warm pages"
        " (each request once to warm, then in rounds), p50 ms:",
        "",
        "| Read | "
        + " | ".join(labels)
        + "".join(f" | {lb}/{labels[0]}" for lb in labels[1:])
        + " |",
        "|---" + "|---:" * (2 * len(sizes) - 1) + "|",
    ]
    for name in names:
        p50s = [res[s]["inprocess"].get(name) for s in sizes]
        if any(p is None for p in p50s):
            continue
        cells = [f"{p:.2f}" for p in p50s] + [f"{ratio(p, p50s[0]):.2f}" for p in p50s[1:]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines
