"""The published memtrace-sdk 0.2.0, unchanged, against a live ``memtrace serve``.

It shares the import name ``memtrace`` with our SDK, so it lives in its own cached
virtualenv and runs in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ROOT, LiveServer, memtrace_cli

SDK_VENV = ROOT / ".cache" / "sdk-0.2.0"
DRIVER = Path(__file__).parent / "compat" / "sdk020_driver.py"


@pytest.fixture(scope="session")
def sdk020_python() -> Path:
    python = SDK_VENV / "bin" / "python"
    marker = SDK_VENV / ".ready"
    if not marker.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(SDK_VENV)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "memtrace-sdk==0.2.0"],
            check=True,
            timeout=600,
        )
        marker.write_text("memtrace-sdk==0.2.0\n")
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('memtrace-sdk'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == "0.2.0"
    return python


def run_driver(python: Path, url: str, key: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    proc = subprocess.run(
        [str(python), str(DRIVER)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "MEMTRACE_URL": url, "MEMTRACE_API_KEY": key},
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.fixture(params=["sqlite", "postgres"])
def compat_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    store_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    server = LiveServer(tmp_path / "live", store_url=store_url).start()
    try:
        yield server
    finally:
        server.stop()


def test_sdk_020_drives_every_method(sdk020_python: Path, compat_server: LiveServer) -> None:
    live_server = compat_server
    out = memtrace_cli(
        "key",
        "create",
        "--org",
        "org_default",
        "--name",
        "compat",
        "--permissions",
        "read,write",
        data_dir=live_server.data_dir,
        store_url=live_server.store_url,
    ).stdout
    key = out.strip().splitlines()[-1]
    assert key.startswith("mtk_") and len(key) == 48
    r = run_driver(sdk020_python, live_server.url, key)

    assert r["remember"]["memory_type"] == "episodic" and r["remember"]["event_type"] == "general"
    assert r["remember"]["dedup_key"] == "e81f1de3b743bacd47421867ad0574e4"
    assert r["remember"]["org_id"] == "org_default"
    assert r["duplicate"] == ["ConflictError", "duplicate memory", 409]
    assert r["decide"]["memory_type"] == "decision" and r["decide"]["metadata"] == {
        "reasoning": "Need ACID"
    }
    agent = r["register_agent"]
    assert agent["id"].startswith("agent_") and agent["description"] == "Finds things"
    assert r["agent_conflict"] == "agent 'researcher' already exists in this organization"
    session = r["create_session"]
    assert session["agent_id"] == agent["id"] and session["status"] == "active"
    assert session["metadata"] == {"task": "compat"}
    added = r["add_memory"]
    assert added["tags"] == ["pricing", "api"] and added["importance"] == 0.8
    assert added["metadata"] == {"endpoint": "/prices"} and added["session_id"] == session["id"]
    assert [m["content"] for m in r["add_memories"]] == [
        "Skip pagination",
        "Rate limited, backing off",
    ]
    assert [m["content"] for m in r["recall"]["memories"]] == [
        "Use PostgreSQL",
        "User prefers dark mode",
    ]
    assert r["recall"]["has_more"] is False
    assert [m["content"] for m in r["list_memories"]["memories"]] == [
        "Called the pricing API and got 3 items"
    ]
    assert r["list_paged"]["count"] == 2 and r["list_paged"]["has_more"] is True
    assert [m["content"] for m in r["search_memories"]["results"]] == [
        "Called the pricing API and got 3 items"
    ]
    assert r["search_memories"]["count"] == 1
    assert r["list_agents"]["count"] == 1
    assert r["get_agent"] == r["get_agent_by_name"]
    assert r["get_agent"]["last_active_at"] is not None  # its memories made it active
    assert {**r["get_agent"], "last_active_at": None} == agent
    stats = r["get_agent_stats"]
    assert stats["memory_count"] == 3 and stats["memories_24h"] == 3 and stats["errors_24h"] == 1
    assert stats["session_count"] == 1 and stats["active_sessions"] == 1
    assert stats["memory_types"] == {"episodic": 1, "decision": 1, "session": 1}
    assert r["get_agent_memories"]["count"] == 3
    assert r["get_session"] == session

    # the exact default markdown, built from the server's own nanosecond times
    rows = httpx.get(
        f"{live_server.url}/api/v1/sessions/{session['id']}/memories",
        headers={"x-api-key": key},
        timeout=10,
    ).json()["memories"]
    t = {m["content"]: m["time"] for m in rows}
    expected = (
        f"## Session Context ({session['id']})\n\n"
        f"### Recent Actions (1)\n- [{t['Called the pricing API and got 3 items']}] api_call: "
        "Called the pricing API and got 3 items\n\n"
        f"### Decisions Made (1)\n- [{t['Skip pagination']}] decision: Skip pagination\n\n"
        f"### Errors (1)\n- [{t['Rate limited, backing off']}] error: Rate limited, backing off\n\n"
    )
    assert r["get_session_context"] == {
        "session_id": session["id"],
        "context": expected,
        "memory_count": 3,
    }
    assert r["get_session_context_opts"]["memory_count"] == 1
    assert "### Decisions Made (1)" in r["get_session_context_opts"]["context"]
    assert [m["content"] for m in r["get_session_memories"]["memories"]] == [
        "Called the pricing API and got 3 items",
        "Skip pagination",
        "Rate limited, backing off",
    ]
    assert r["list_sessions"]["count"] == 1 and r["list_sessions_agent"]["count"] == 1
    closed = r["close_session"]
    assert closed["status"] == "closed" and closed["closed_at"] is not None
    assert r["not_found"] == ["NotFoundError", "session not found", 404]
    assert r["delete_agent"] is None and r["deleted_agent_gone"] is True
    assert r["bad_filter"] == ["MemtraceError", 400]
    assert r["bad_key"] == ["AuthenticationError", "invalid API key", 401]
    assert r["async"]["remember"]["content"] == "async hello"
    assert r["async"]["recall"]["count"] == 1
