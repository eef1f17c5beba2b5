"""Console pages' render time over loopback: a signed-in browser's requests, one at a time.

Used by ``bench/run.py`` in the reads phase, against the same store and server as the API
reads. Each page is requested ``count`` times (different agents, words and sessions) after
one warm-up round; the figure is the time from request to the last byte of the page.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
from goals import label

PAGES: dict[str, Callable[[dict[str, Any], int], str]] = {
    "Overview": lambda t, i: "/ui/",
    "Memories (agent filter)": lambda t, i: (
        f"/ui/memories?agent_id={quote(t['agents'][i % len(t['agents'])])}"
    ),
    "Memories (tag + 7d filter)": lambda t, i: (
        f"/ui/memories?tags={quote(','.join(t['tag_pairs'][i % len(t['tag_pairs'])][:1]))}&since=7d"
    ),
    "Memories (searched)": lambda t, i: (
        "/ui/memories?q=" + quote(" ".join(t["words"][i % 490 : i % 490 + 3]))
    ),
    "Session page": lambda t, i: f"/ui/sessions/{t['sessions'][i % len(t['sessions'])]}",
}


def measure(url: str, targets: dict[str, Any], count: int = 30) -> dict[str, dict[str, float]]:
    """p50 and p95 in milliseconds of each console page, signed in with the targets' key."""
    out: dict[str, dict[str, float]] = {}
    with httpx.Client(base_url=url, timeout=60, follow_redirects=True) as client:
        form = client.get("/ui/sign-in").text
        token = form.split('name="login_token" value="', 1)[1].split('"', 1)[0]
        signed = client.post("/ui/sign-in", data={"api_key": targets["key"], "login_token": token})
        if signed.status_code != 200 or "/ui/sign-in" in str(signed.url):
            raise SystemExit(f"console sign-in failed: {signed.status_code}")
        for name, path in PAGES.items():
            client.get(path(targets, 0)).raise_for_status()  # warm-up
            took = []
            for i in range(count):
                started = time.perf_counter()
                client.get(path(targets, i)).raise_for_status()
                took.append((time.perf_counter() - started) * 1000)
            took.sort()
            out[name] = {
                "p50_ms": statistics.median(took),
                "p95_ms": took[min(len(took) - 1, int(len(took) * 0.95))],
            }
    return out


def report(reads: dict[str, Any]) -> list[str]:
    """A markdown table of the pages at each store size."""
    sizes = [s for s in reads if "console" in reads[s]]
    if not sizes:
        return []
    lines = [
        "",
        "| Console page (c=1) | " + " | ".join(f"{label(s)} p50 / p95 ms" for s in sizes) + " |",
        "|---" + "|---:" * len(sizes) + "|",
    ]
    for name in PAGES:
        cells = [
            f"{reads[s]['console'][name]['p50_ms']:.1f} / {reads[s]['console'][name]['p95_ms']:.1f}"
            for s in sizes
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines
