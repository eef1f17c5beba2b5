"""Evidence recall of ``POST /api/v1/search`` with ``query`` on the LoCoMo dev split.

    python bench/locomo.py [--data ../shared/data/locomo/locomo-dev.json] [--url URL --key KEY]

Without --url it starts ``memtrace serve`` on a temporary data directory. Every dialogue
turn becomes one memory through the HTTP API (agent = the conversation's sample id, one
session per LoCoMo session, time = that session's date, content = "<speaker>: <text>" plus
the image caption, the turn's dia_id in metadata). Then every question of categories 1-4 is
a search with query = the question, and R@5/R@10/R@20 is the fraction of its evidence turns
in the top k, averaged over questions; latency is measured at the client, over HTTP.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
from server import Server, create_key, serve_memtrace, sqlite_url

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "locomo" / "locomo-dev.json"
KS = (5, 10, 20)


def session_time(text: str) -> datetime:
    """LoCoMo's '1:56 pm on 8 May, 2023' as UTC."""
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=timezone.utc)


def turns(sample: dict[str, Any]) -> list[dict[str, Any]]:
    """One memory body per dialogue turn of a conversation."""
    conv, agent, out = sample["conversation"], sample["sample_id"], []
    n = 1
    while f"session_{n}" in conv:
        start = session_time(conv[f"session_{n}_date_time"])
        for i, turn in enumerate(conv[f"session_{n}"]):
            content = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                content += f" [shares an image: {turn['blip_caption']}]"
            out.append(
                {
                    "agent_id": agent,
                    "session_id": f"{agent}-s{n}",
                    "content": content,
                    "event_type": "dialogue_turn",
                    "metadata": {"dia_id": turn["dia_id"]},
                    "dedup_key": f"{agent}:{turn['dia_id']}",
                    "time": (start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
        n += 1
    return out


def start_server(store_url: str | None, *, semantic: bool = False) -> tuple[Server, str]:
    """``memtrace serve`` on a temporary data directory (or ``store_url``), and a key."""
    data = Path(tempfile.mkdtemp(prefix="memtrace-locomo-"))
    key = create_key(store_url or sqlite_url(data), "org_locomo")
    env = {"MEMTRACE_LOG_LEVEL": "warn", "MEMTRACE_STORE_SYNCHRONOUS": "NORMAL"}
    if semantic:
        env["MEMTRACE_SEARCH_SEMANTIC"] = "true"
    return serve_memtrace(data, data / "server.log", store_url, env), key


def wait_for_embeddings(client: httpx.Client, count: int, timeout: float = 900) -> float:
    """Poll /metrics until the server embedded ``count`` memories; seconds it took."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("memtrace_memories_embedded ") and float(line.split()[1]) >= count:
                return time.perf_counter() - started
        time.sleep(0.5)
    raise SystemExit(f"embeddings not done after {timeout} s")


def evaluate(client: httpx.Client, samples: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """Recall at each k and search latency over every question of categories 1-4."""
    recalls: dict[int, list[float]] = {k: [] for k in KS}
    latencies: list[float] = []
    for sample in samples:
        for qa in sample["qa"]:
            if qa.get("category") not in (1, 2, 3, 4) or not qa.get("evidence"):
                continue
            started = time.perf_counter()
            r = client.post(
                "/api/v1/search",
                json={
                    "agent_id": sample["sample_id"],
                    "query": qa["question"],
                    "limit": max(KS),
                    "mode": mode,
                },
            )
            latencies.append((time.perf_counter() - started) * 1000)
            r.raise_for_status()
            ranked = [m["metadata"]["dia_id"] for m in r.json()["results"]]
            evidence = set(qa["evidence"])
            for k in KS:
                recalls[k].append(len(evidence & set(ranked[:k])) / len(evidence))
    latencies.sort()
    return {
        "questions": len(latencies),
        "mode": mode,
        **{f"R@{k}": round(100 * statistics.fmean(v), 1) for k, v in recalls.items()},
        "p50_ms": round(latencies[len(latencies) // 2], 2),
        "p95_ms": round(latencies[int(len(latencies) * 0.95)], 2),
    }


def main() -> None:
    """Load, query, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--url")
    parser.add_argument("--key")
    parser.add_argument(
        "--mode", default="bm25", help="bm25, hybrid, or both as a comma list (bm25,hybrid)"
    )
    parser.add_argument(
        "--store-url", help="Store of the server it starts (default: SQLite in a temp dir)."
    )
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    samples = json.loads(args.data.read_text())
    server = None
    url, key = args.url, args.key
    if not url:
        server, key = start_server(args.store_url, semantic="hybrid" in modes)
        url = server.url
    results = []
    try:
        with httpx.Client(base_url=url, headers={"x-api-key": key or ""}, timeout=60) as client:
            loaded = 0
            for sample in samples:
                body = turns(sample)
                for i in range(0, len(body), 500):
                    r = client.post("/api/v1/memories", json={"memories": body[i : i + 500]})
                    r.raise_for_status()
                    loaded += r.json()["count"]
            embed_seconds = wait_for_embeddings(client, loaded) if "hybrid" in modes else None
            for mode in modes:
                results.append({"memories": loaded, **evaluate(client, samples, mode)})
    finally:
        if server is not None:
            server.stop()
    print("| mode | memories | questions | R@5 | R@10 | R@20 | search p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for f in results:
        print(
            f"| {f['mode']} | {f['memories']} | {f['questions']} | {f['R@5']} | {f['R@10']} |"
            f" {f['R@20']} | {f['p50_ms']} | {f['p95_ms']} |"
        )
    if embed_seconds is not None:
        print(
            f"\nembedding {loaded} memories in the background took {embed_seconds:.1f} s"
            f" ({loaded / embed_seconds:.0f} memories/s)"
        )
        for f in results:
            f["embed_seconds"] = round(embed_seconds, 1)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
