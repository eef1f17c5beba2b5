"""``memtrace-mcp``: in-process through ``mcp.Client``, as a real stdio subprocess, and over
streamable HTTP, always against the real Memtrace server."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters

from memtrace import AsyncMemtrace
from memtrace.mcp import build_server

from conftest import BIN, App, LiveServer, free_port, new_cli_key

TOOLS = {
    "memtrace_remember",
    "memtrace_recall",
    "memtrace_search",
    "memtrace_decide",
    "memtrace_session_create",
    "memtrace_session_context",
    "memtrace_agent_register",
    "memtrace_forget",  # the lifecycle addition to the reference's seven
}


@pytest.fixture
async def memtrace(app: App, org_key: tuple[str, str]) -> AsyncIterator[AsyncMemtrace]:
    async with app.async_sdk(org_key[1]) as c:
        yield c


def text(result: Any) -> str:
    return "\n".join(getattr(part, "text", "") for part in result.content)


async def exercise_all_tools(client: Client) -> dict[str, Any]:
    """Call every tool once; return what came back, for the callers to check."""
    out: dict[str, Any] = {}
    agent = await client.call_tool(
        "memtrace_agent_register", {"name": "claude", "description": "coding agent"}
    )
    assert not agent.is_error, text(agent)
    out["agent"] = agent.structured_content
    session = await client.call_tool(
        "memtrace_session_create", {"agent_id": "claude", "metadata": {"task": "fix bug"}}
    )
    out["session"] = session.structured_content
    sid = out["session"]["id"]
    out["remember"] = (
        await client.call_tool(
            "memtrace_remember",
            {
                "agent_id": "claude",
                "content": "The flaky test was a race in the cache",
                "session_id": sid,
                "tags": ["bug", "cache"],
                "importance": 0.9,
                "event_type": "observation",
            },
        )
    ).structured_content
    out["decide"] = (
        await client.call_tool(
            "memtrace_decide",
            {
                "agent_id": "claude",
                "decision": "Guard the cache with a lock",
                "reasoning": "Two writers race",
                "session_id": sid,
            },
        )
    ).structured_content
    out["recall"] = (
        await client.call_tool("memtrace_recall", {"agent_id": "claude", "since": "1h"})
    ).structured_content
    out["search"] = (
        await client.call_tool("memtrace_search", {"tags": ["cache"], "min_importance": 0.5})
    ).structured_content
    out["ranked"] = (
        await client.call_tool("memtrace_search", {"query": "why was the test flaky?"})
    ).structured_content
    context = await client.call_tool(
        "memtrace_session_context", {"session_id": sid, "max_tokens": 500}
    )
    out["context"] = text(context)
    return out


def check_effects(out: dict[str, Any]) -> None:
    assert out["agent"]["name"] == "claude" and out["agent"]["id"].startswith("agent_")
    assert (
        out["session"]["agent_id"] == out["agent"]["id"]
    )  # the name resolved to the registered agent
    assert out["remember"]["tags"] == ["bug", "cache"] and out["remember"]["id"].startswith("mem_")
    assert out["decide"]["memory_type"] == "decision" and out["decide"]["metadata"] == {
        "reasoning": "Two writers race"
    }
    assert [m["content"] for m in out["recall"]["memories"]] == [
        "Guard the cache with a lock",
        "The flaky test was a race in the cache",
    ]
    assert [m["content"] for m in out["search"]["results"]] == [
        "The flaky test was a race in the cache"
    ]
    assert out["ranked"]["results"][0]["content"] == "The flaky test was a race in the cache"
    assert out["ranked"]["results"][0]["score"] > 0
    sid = out["session"]["id"]
    assert out["context"].startswith(f"## Session Context ({sid})\n\n")
    assert "observation: The flaky test was a race in the cache" in out["context"]
    assert "decision: Guard the cache with a lock" in out["context"]


@pytest.mark.anyio
async def test_in_process_tools_schemas_and_effects(
    memtrace: AsyncMemtrace, app: App, org_key: tuple[str, str]
) -> None:
    async with Client(build_server(memtrace)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        remember = tools["memtrace_remember"].input_schema
        assert sorted(remember["required"]) == ["agent_id", "content"]
        assert remember["properties"]["memory_type"]["anyOf"][0]["enum"] == [
            "episodic",
            "session",
            "decision",
            "entity",
        ]
        for tool in tools.values():
            assert tool.description
            for name, prop in tool.input_schema["properties"].items():
                assert prop.get("description"), f"{tool.name}.{name}"
        out = await exercise_all_tools(client)
    check_effects(out)
    stored = app.client.get(
        "/api/v1/memories", params={"agent_id": "claude"}, headers={"x-api-key": org_key[1]}
    ).json()
    assert stored["count"] == 2


@pytest.mark.anyio
async def test_in_process_argument_validation_and_error_text(
    memtrace: AsyncMemtrace, app: App
) -> None:
    async with Client(build_server(memtrace)) as client:
        missing = await client.call_tool("memtrace_remember", {"content": "no agent"})
        assert missing.is_error and "agent_id" in text(missing)
        too_big = await client.call_tool(
            "memtrace_remember", {"agent_id": "a", "content": "x", "importance": 2}
        )
        assert too_big.is_error and "importance" in text(too_big)
        bad_window = await client.call_tool("memtrace_recall", {"agent_id": "a", "since": "soon"})
        assert bad_window.is_error
        assert "memtrace api error (status 400): invalid since 'soon'" in text(bad_window)
        await client.call_tool("memtrace_remember", {"agent_id": "a", "content": "dup"})
        dup = await client.call_tool("memtrace_remember", {"agent_id": "a", "content": "dup"})
        assert dup.is_error and "memtrace api error (status 409): duplicate memory" in text(dup)
    wrong = app.async_sdk("mtk_" + "E" * 43 + "=")
    async with Client(build_server(wrong)) as client:
        denied = await client.call_tool("memtrace_recall", {"agent_id": "a"})
        assert denied.is_error and "memtrace api error (status 401): invalid API key" in text(
            denied
        )
    nowhere = AsyncMemtrace(f"http://127.0.0.1:{free_port()}", "k", max_retries=0)
    async with Client(build_server(nowhere)) as client:
        down = await client.call_tool("memtrace_recall", {"agent_id": "a"})
        assert down.is_error and "memtrace server unreachable" in text(down)


def mcp_env(server: LiveServer, key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTRACE_")}
    env["MEMTRACE_URL"] = server.url
    if key is not None:
        env["MEMTRACE_API_KEY"] = key
    return env


@pytest.mark.anyio
async def test_stdio_subprocess_against_live_server(live_server: LiveServer) -> None:
    _, key = new_cli_key(live_server.data_dir)
    params = StdioServerParameters(
        command=str(BIN / "memtrace-mcp"), args=[], env=mcp_env(live_server, key)
    )
    async with Client(params) as client:
        tools = (await client.list_tools()).tools
        assert {t.name for t in tools} == TOOLS
        assert all(t.input_schema["type"] == "object" for t in tools)
        out = await exercise_all_tools(client)
    check_effects(out)
    rest = httpx.get(
        live_server.url + "/api/v1/memories",
        params={"agent_id": "claude"},
        headers={"x-api-key": key},
    ).json()
    assert rest["count"] == 2

    bad = StdioServerParameters(
        command=str(BIN / "memtrace-mcp"),
        args=[],
        env=mcp_env(live_server, "mtk_" + "F" * 43 + "="),
    )
    async with Client(bad) as client:
        result = await client.call_tool("memtrace_remember", {"agent_id": "a", "content": "x"})
    assert result.is_error and "status 401" in text(result) and "invalid API key" in text(result)


def test_stdout_carries_only_protocol_messages(live_server: LiveServer) -> None:
    _, key = new_cli_key(live_server.data_dir)
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {
                "name": "memtrace_remember",
                "arguments": {"agent_id": "raw", "content": "hello"},
            },
        },
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "tools/call",
            "params": {
                "name": "memtrace_recall",
                "arguments": {"agent_id": "raw", "since": "bogus"},
            },
        },
        {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "tools/call",
            "params": {"name": "no_such_tool", "arguments": {}},
        },
    ]
    proc = subprocess.Popen(
        [str(BIN / "memtrace-mcp")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=mcp_env(live_server, key),
    )
    assert proc.stdin is not None and proc.stdout is not None
    lines: list[bytes] = []
    for request in requests:
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        proc.stdin.flush()
        if "id" in request:
            lines.append(proc.stdout.readline())
    proc.stdin.close()
    rest = proc.stdout.read()
    proc.wait(timeout=20)
    lines.extend(line for line in rest.splitlines(keepends=True) if line)
    messages = [json.loads(line) for line in lines]  # every byte on stdout is JSON-RPC
    assert all(m.get("jsonrpc") == "2.0" for m in messages)
    by_id = {m["id"]: m for m in messages if "id" in m}
    assert set(by_id) == {1, 2, 3, 4, 5}
    assert len(by_id[2]["result"]["tools"]) == len(TOOLS)
    assert by_id[3]["result"]["isError"] is False
    assert by_id[4]["result"]["isError"] is True


def test_missing_key_is_one_line_on_stderr_and_exit_2(live_server: LiveServer) -> None:
    proc = subprocess.run(
        [str(BIN / "memtrace-mcp")],
        capture_output=True,
        text=True,
        timeout=30,
        env=mcp_env(live_server, None),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "MEMTRACE_API_KEY is required" in proc.stderr


@pytest.mark.anyio
async def test_streamable_http_transport(live_server: LiveServer) -> None:
    _, key = new_cli_key(live_server.data_dir)
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "memtrace-mcp"), "--transport", "http", "--port", str(port)],
        env=mcp_env(live_server, key),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, (
                    "memtrace-mcp http did not start"
                )
                time.sleep(0.1)
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            result = await client.call_tool(
                "memtrace_remember", {"agent_id": "web", "content": "over http"}
            )
            assert not result.is_error, text(result)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    listed = httpx.get(
        live_server.url + "/api/v1/memories", params={"agent_id": "web"}, headers={"x-api-key": key}
    )
    assert listed.json()["count"] == 1


@pytest.mark.anyio
async def test_forget_erases_only_the_agents_own_memory(memtrace: AsyncMemtrace) -> None:
    mine = await memtrace.remember("claude", "the user's old phone number is 555-0100")
    theirs = await memtrace.remember("other_agent", "not yours to forget")
    async with Client(build_server(memtrace)) as client:
        refused = await client.call_tool(
            "memtrace_forget", {"agent_id": "claude", "memory_id": theirs.id}
        )
        assert refused.is_error and "belongs to another agent" in text(refused)
        done = await client.call_tool(
            "memtrace_forget", {"agent_id": "claude", "memory_id": mine.id}
        )
        assert not done.is_error
        assert done.structured_content == {"forgotten": True, "id": mine.id}
        again = await client.call_tool(
            "memtrace_forget", {"agent_id": "claude", "memory_id": mine.id}
        )
        assert again.is_error and "status 404" in text(again)
    assert (await memtrace.recall("claude")).count == 0
    assert (await memtrace.recall("other_agent")).count == 1
