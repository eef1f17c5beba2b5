"""The seed's OpenAI examples, extracted from the seed document at test time and run as
written against a live server, with the real ``openai`` client talking to a local
scripted Chat Completions server. Only the Memtrace host and key (two string literals)
and the OpenAI base URL (environment) come from outside."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ROOT, LiveServer, new_cli_key

sys.path.insert(0, str(ROOT / "examples" / "openai"))
from scripted_openai import ScriptedChatServer

SEED = ROOT.parent / "shared" / "seed" / "openai-integration.md"


def seed_block(heading: str) -> str:
    text = SEED.read_text(encoding="utf-8")
    start = text.index(heading)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, heading
    return match.group(1)


def localise(code: str, server: LiveServer, key: str) -> str:
    assert code.count('"http://localhost:9100"') <= 1 and code.count('"mtk_..."') <= 1
    return code.replace('"http://localhost:9100"', repr(server.url)).replace('"mtk_..."', repr(key))


@pytest.fixture
def chat(monkeypatch: pytest.MonkeyPatch) -> Any:
    server = ScriptedChatServer().start()
    monkeypatch.setenv("OPENAI_API_KEY", "scripted")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    yield server
    server.stop()


def api(server: LiveServer, key: str, method: str, path: str, **kw: Any) -> Any:
    r = httpx.request(
        method, server.url + "/api/v1" + path, headers={"x-api-key": key}, timeout=10, **kw
    )
    assert r.status_code < 300, r.text
    return r.json()


def test_seed_single_agent_example_runs_as_written(
    live_server: LiveServer, chat: ScriptedChatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    _, key = new_cli_key(live_server.data_dir)
    chat.script = [
        [
            (
                "memtrace_remember",
                {
                    "content": "User prefers dark mode",
                    "tags": ["preference", "ui"],
                    "importance": 0.8,
                },
            ),
            ("memtrace_recall", {"since": "1h"}),
            (
                "memtrace_search",
                {"content_contains": "dark", "tags": ["ui"], "min_importance": 0.5},
            ),
            (
                "memtrace_decide",
                {"decision": "Enable dark mode by default", "reasoning": "The user prefers it"},
            ),
        ],
        "Got it: dark mode from now on.",
    ]
    code = localise(seed_block("### Single Agent Example"), live_server, key)
    # The seed calls json.loads without importing json, as if pasted below other code.
    exec(compile(code, "seed-single-agent", "exec"), {"__name__": "seed", "json": json})
    assert "Got it: dark mode from now on." in capsys.readouterr().out

    (agent,) = api(live_server, key, "GET", "/agents")["agents"]
    assert (
        agent["name"] == "assistant" and agent["description"] == "Helpful AI assistant with memory"
    )
    (session,) = api(live_server, key, "GET", "/sessions")["sessions"]
    assert session["agent_id"] == agent["id"] and session["status"] == "closed"
    assert session["metadata"] == {"task": "conversation"}
    stored = api(live_server, key, "GET", "/memories", params={"agent_id": agent["id"]})["memories"]
    remembered = next(m for m in stored if m["content"] == "User prefers dark mode")
    assert remembered["session_id"] == session["id"] and remembered["memory_type"] == "episodic"
    assert remembered["tags"] == ["preference", "ui"] and remembered["importance"] == 0.8
    decision = next(m for m in stored if m["memory_type"] == "decision")
    assert decision["content"] == "Enable dark mode by default"
    assert decision["metadata"] == {"reasoning": "The user prefers it"}
    ctx = api(live_server, key, "POST", f"/sessions/{session['id']}/context", json={"since": "4h"})
    assert ctx["memory_count"] == 1 and "general: User prefers dark mode" in ctx["context"]

    # what the model was told by the seed's own tool handler
    first, second = chat.requests
    assert first["messages"][0]["content"].startswith(
        "You are a helpful assistant.\n\n## Session Context ("
    )
    tool_results = {
        m["tool_call_id"]: m["content"] for m in second["messages"] if m["role"] == "tool"
    }
    assert len(tool_results) == 4
    contents = list(tool_results.values())
    assert contents[0] == f"Stored memory: {remembered['id']}"
    assert contents[1] == contents[2] == "- User prefers dark mode"
    assert contents[3] == "Decision logged"


def test_seed_multi_agent_example_runs_as_written(
    live_server: LiveServer, chat: ScriptedChatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    _, key = new_cli_key(live_server.data_dir)
    single = seed_block("### Single Agent Example")
    setup = single[: single.index("# Register agent")]  # the seed's imports and clients
    namespace: dict[str, Any] = {"__name__": "seed"}
    exec(compile(localise(setup, live_server, key), "seed-setup", "exec"), namespace)
    chat.script = ["Summary report: nothing researched yet."]
    exec(compile(seed_block("### Multi-Agent Example"), "seed-multi-agent", "exec"), namespace)
    assert "Summary report: nothing researched yet." in capsys.readouterr().out

    session, researcher, summarizer = (
        namespace["session"],
        namespace["researcher"],
        namespace["summarizer"],
    )
    # the session was opened for "researcher" before it was registered; registering adopted it
    assert session.agent_id == researcher.id == "researcher"
    assert researcher.description == "Investigates topics and stores findings"
    assert summarizer.name == "summarizer"
    agents = {a["name"] for a in api(live_server, key, "GET", "/agents")["agents"]}
    assert agents == {"researcher", "summarizer"}
    (request,) = chat.requests
    assert (
        request["messages"][0]["content"]
        == f"You are a report writer.\n\n## Session Context ({session.id})\n\n"
    )


def run_example(name: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "openai" / name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_examples_run_offline_and_rerun_cleanly(
    live_server: LiveServer, chat: ScriptedChatServer
) -> None:
    _, key = new_cli_key(live_server.data_dir)
    env = {**os.environ, "MEMTRACE_URL": live_server.url, "MEMTRACE_API_KEY": key}
    first = run_example("single_agent.py", env)
    assert "No prior memories (first run)." in first
    assert "- [episodic] User said: My name is Alex" in first
    assert "- [decision] Recommend Python" in first
    second = run_example("single_agent.py", env)
    assert "Prior memory, from session sess_" in second
    assert "general: User said: My name is Alex" in second
    multi = run_example("multi_agent.py", env)
    assert re.search(r"Shared context \([1-9]\d* memories\)", multi)
    assert "Summarizer (agent_" in multi
    run_example("multi_agent.py", env)  # agents are reused, not a 409
    names = sorted(a["name"] for a in api(live_server, key, "GET", "/agents")["agents"])
    assert names == ["openai-cookbook-agent", "researcher", "summarizer"]


def test_sdk_installs_with_only_httpx_and_pydantic(tmp_path: Path) -> None:
    import venv

    env_dir = tmp_path / "empty"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(ROOT / "packages" / "memtrace-sdk")],
        check=True,
        timeout=600,
    )
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed)}
    expected = {
        "memtrace-sdk",
        "httpx",
        "pydantic",
        "pydantic-core",
        "anyio",
        "certifi",
        "httpcore",
        "h11",
        "idna",
        "sniffio",
        "typing-extensions",
        "annotated-types",
        "typing-inspection",
        "pip",
        "setuptools",
        "exceptiongroup",
    }
    assert installed <= expected, installed - expected
    assert {"memtrace-sdk", "httpx", "pydantic"} <= installed
    subprocess.run(
        [str(python), "-c", "import memtrace, memtrace.openai; memtrace.Memtrace('http://x', 'k')"],
        check=True,
    )
