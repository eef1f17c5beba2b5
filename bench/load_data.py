"""Fill a store with synthetic memories quickly, for benchmarks and measurements.

    python bench/load_data.py --db /tmp/m.db --count 1000000 [--orgs 10]

Writes straight into the SQLite schema (after the server's own migrations) in large
transactions: orgs, 1,000 agents with skewed activity, 20,000 sessions, tags from a
vocabulary of 200, 150-400 character contents.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import time
from pathlib import Path

from memtrace_server.core.dedup import dedup_key
from memtrace_server.core.ids import new_memory_id
from memtrace_server.storage.sqlite import SQLiteStore

WORDS = [f"w{n}" for n in range(5000)]


def main() -> None:
    """Parse the arguments and load the store."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    asyncio.run(_migrate(args.db))
    conn = sqlite3.connect(args.db, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    now = time.time_ns()
    orgs = [f"org_bench{i:02d}" for i in range(args.orgs)]
    conn.execute("BEGIN")
    for org in orgs:
        conn.execute(
            "INSERT OR IGNORE INTO orgs (id, name, created_at) VALUES (?, ?, ?)", (org, org, now)
        )
    agents = [(orgs[i % len(orgs)], f"agent_{i:04d}") for i in range(1000)]
    weights = [rng.lognormvariate(0, 1) for _ in agents]
    sessions = [
        (org, f"sess_{i:05d}", agent)
        for i, (org, agent) in enumerate(rng.choices(agents, k=20_000))
    ]
    tags = [f"tag{n}" for n in range(200)]
    span = 60 * 86400 * 10**9
    batch: list[tuple[object, ...]] = []
    tag_rows: list[tuple[object, ...]] = []
    rid = conn.execute("SELECT coalesce(max(rid), 0) FROM memories").fetchone()[0]
    for n in range(args.count):
        org, agent = rng.choices(agents, weights)[0]
        session = rng.choice(sessions)[1] if rng.random() < 0.7 else ""
        t = now - span + (span * n) // args.count
        content = " ".join(rng.choices(WORDS, k=rng.randint(25, 60)))[: rng.randint(150, 400)]
        chosen = tuple(sorted(set(rng.choices(tags, k=3))))
        rid += 1
        batch.append(
            (
                rid,
                new_memory_id(t),
                org,
                agent,
                session,
                rng.choice(("episodic", "decision", "entity", "session")),
                rng.choice(("general", "observation", "error", "action")),
                content,
                json.dumps({"n": n}),
                json.dumps(list(chosen)),
                dedup_key(agent, "general", content),
                rng.random(),
                "",
                t,
            )
        )
        tag_rows.extend((org, tag, t, rid) for tag in chosen)
        if len(batch) >= 20_000:
            _flush(conn, batch, tag_rows)
    _flush(conn, batch, tag_rows)
    conn.execute("COMMIT")
    conn.close()
    print(f"loaded {args.count} memories into {args.db}")


def _flush(
    conn: sqlite3.Connection, batch: list[tuple[object, ...]], tag_rows: list[tuple[object, ...]]
) -> None:
    conn.executemany(
        "INSERT INTO memories (rid, id, org_id, agent_id, session_id, memory_type, event_type, content,"
        " metadata_json, tags, dedup_key, importance, parent_id, time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        batch,
    )
    conn.executemany(
        "INSERT OR IGNORE INTO memory_tags (org_id, tag, time, rid) VALUES (?, ?, ?, ?)", tag_rows
    )
    batch.clear()
    tag_rows.clear()


async def _migrate(path: Path) -> None:
    store = SQLiteStore(path, synchronous="NORMAL")
    await store.open()
    await store.close()


if __name__ == "__main__":
    main()
