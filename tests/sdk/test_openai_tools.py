"""``memtrace.openai``: tool definitions, the toolbox and the tool loop, with the real
``openai`` client talking to a local scripted Chat Completions server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from openai import AsyncOpenAI, OpenAI

from memtrace import Memtrace
from memtrace.openai import (
    MEMTRACE_TOOLS,
    AsyncMemtraceToolbox,
    MemtraceToolbox,
    arun_with_memory,
    run_with_memory,
)

from conftest import ROOT, App

sys.path.insert(0, str(ROOT / "examples" / "openai"))
from scripted_openai import ScriptedChatServer


@pytest.fixture
def memtrace(app: App, org_key: tuple[str, str]) -> Iterator[Memtrace]:
    with app.sdk(org_key[1]) as c:
        yield c


def call(call_id: str, name: str, args: Any) -> dict[str, Any]:
    arguments = args if isinstance(args, str) else json.dumps(args)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_tool_definitions_keep_optional_parameters_optional() -> None:
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in MEMTRACE_TOOLS}
    assert list(by_name) == [
        "memtrace_remember",
        "memtrace_recall",
        "memtrace_search",
        "memtrace_decide",
    ]
    assert by_name["memtrace_remember"]["required"] == ["content"]
    assert (
        "required" not in by_name["memtrace_recall"]
        and "required" not in by_name["memtrace_search"]
    )
    assert by_name["memtrace_decide"]["required"] == ["decision", "reasoning"]
    for params in by_name.values():
        for prop in params["properties"].values():
            assert prop.get("description") or prop.get("type") == "array"


def test_importing_the_tools_does_not_import_openai() -> None:
    code = "import sys, memtrace.openai; assert 'openai' not in sys.modules, 'openai imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_toolbox_answers_every_call_and_stores_as_intended(memtrace: Memtrace) -> None:
    session = memtrace.create_session({"agent_id": "helper"})
    box = MemtraceToolbox(memtrace, agent_id="helper", session_id=session.id)
    replies = box.handle_tool_calls(
        [
            call(
                "c1",
                "memtrace_remember",
                {"content": "Alex prefers dark mode", "tags": ["pref"], "importance": 0.8},
            ),
            call("c2", "memtrace_remember", {"content": "Alex prefers dark mode"}),
            call("c3", "memtrace_recall", {"since": "1h"}),
            call(
                "c4",
                "memtrace_search",
                {"content_contains": "dark", "tags": None, "min_importance": None},
            ),
            call(
                "c5",
                "memtrace_decide",
                {"decision": "Use dark theme", "reasoning": "User preference"},
            ),
            call("c6", "memtrace_recall", "{not json"),
            call("c7", "memtrace_teleport", {}),
            call("c8", "memtrace_remember", {"tags": ["no content"]}),
            call("c9", "memtrace_recall", {"since": "whenever"}),
            {"id": "c10", "type": "custom", "custom": {"name": "x", "input": "y"}},
        ]
    )
    assert [r["tool_call_id"] for r in replies] == [f"c{i}" for i in range(1, 11)]
    assert all(r["role"] == "tool" and isinstance(r["content"], str) for r in replies)
    results = [json.loads(r["content"]) for r in replies]
    assert results[0]["stored"] is True and results[0]["id"].startswith("mem_")
    assert results[1] == {
        "stored": False,
        "duplicate": True,
        "note": "an identical memory was stored recently",
    }
    assert [m["content"] for m in results[2]["memories"]] == ["Alex prefers dark mode"]
    assert results[3]["count"] == 1 and results[3]["memories"][0]["tags"] == ["pref"]
    assert results[4]["logged"] is True
    assert "bad arguments for memtrace_recall" in results[5]["error"]
    assert results[6] == {"error": "unknown tool 'memtrace_teleport'"}
    assert "bad arguments for memtrace_remember" in results[7]["error"]
    assert results[8]["status"] == 400 and "invalid since" in results[8]["error"]
    assert "unsupported tool call type 'custom'" in results[9]["error"]
    # the effects, read back through the API: the memory and the decision belong to the session
    ctx = memtrace.get_session_context(session.id)
    assert ctx.memory_count == 2
    assert (
        "general: Alex prefers dark mode" in ctx.context
        and "decision: Use dark theme" in ctx.context
    )
    decision = memtrace.search_memories(memory_types=["decision"]).results[0]
    assert (
        decision.metadata == {"reasoning": "User preference"} and decision.session_id == session.id
    )


def test_toolbox_turns_server_failures_into_text(app: App) -> None:
    with app.sdk("mtk_" + "C" * 43 + "=") as bad:
        (reply,) = MemtraceToolbox(bad, "a").handle_tool_calls([call("x", "memtrace_recall", {})])
    assert json.loads(reply["content"]) == {"error": "invalid API key", "status": 401}


def test_run_with_memory_loops_until_the_model_stops(memtrace: Memtrace) -> None:
    chat = ScriptedChatServer(
        [
            [("memtrace_remember", {"content": "Project deadline is Friday"})],
            [("memtrace_recall", {})],
            "Noted: the deadline is Friday.",
        ]
    ).start()
    try:
        client = OpenAI(api_key="test", base_url=chat.base_url, max_retries=0)
        messages: list[Any] = [{"role": "user", "content": "The deadline is Friday."}]
        final = run_with_memory(client, messages, MemtraceToolbox(memtrace, "planner"), model="m")
    finally:
        chat.stop()
    assert final.content == "Noted: the deadline is Friday."
    assert [m["role"] for m in messages] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    json.dumps(messages)  # plain dicts all the way: loggable and persistable
    assert len(chat.requests) == 3 and chat.requests[0]["tools"] == MEMTRACE_TOOLS
    assert memtrace.recall("planner").memories[0].content == "Project deadline is Friday"


def test_run_with_memory_stops_a_model_that_never_stops(memtrace: Memtrace) -> None:
    chat = ScriptedChatServer([[("memtrace_recall", {})]] * 3 + ["forced answer"]).start()
    try:
        client = OpenAI(api_key="test", base_url=chat.base_url, max_retries=0)
        final = run_with_memory(
            client,
            [{"role": "user", "content": "loop"}],
            MemtraceToolbox(memtrace, "a"),
            max_rounds=3,
        )
    finally:
        chat.stop()
    assert final.content == "forced answer"
    assert len(chat.requests) == 4 and chat.requests[-1]["tool_choice"] == "none"


@pytest.mark.anyio
async def test_async_toolbox_and_loop(app: App, org_key: tuple[str, str]) -> None:
    chat = ScriptedChatServer(
        [[("memtrace_remember", {"content": "async fact", "tags": ["a"]})], "ok"]
    ).start()
    try:
        async with app.async_sdk(org_key[1]) as mt:
            client = AsyncOpenAI(api_key="test", base_url=chat.base_url, max_retries=0)
            final = await arun_with_memory(
                client, [{"role": "user", "content": "x"}], AsyncMemtraceToolbox(mt, "async-agent")
            )
            assert final.content == "ok"
            assert (await mt.recall("async-agent")).memories[0].tags == ["a"]
            replies = await AsyncMemtraceToolbox(mt, "async-agent").handle_tool_calls(
                [call("z", "nope", {})]
            )
            assert json.loads(replies[0]["content"]) == {"error": "unknown tool 'nope'"}
    finally:
        chat.stop()
