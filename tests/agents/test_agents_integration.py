"""``openai-agents-memtrace`` with the real ``Runner.run`` and ``ScriptedModel`` (no network),
against a live Memtrace server."""

from __future__ import annotations

import ast
import logging
import re
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from agents import Agent, Runner, set_default_openai_api, set_default_openai_client
from agents.testing import ScriptedModel, assistant_message, function_call
from openai import AsyncOpenAI

from memtrace import AsyncMemtrace, AuthenticationError, MemtraceError
from openai_agents_memtrace import MemtraceSession, create_memtrace_tools

from conftest import ROOT, LiveServer, new_cli_key

sys.path.insert(0, str(ROOT / "examples" / "openai"))
from scripted_openai import ScriptedChatServer

SEED = ROOT.parent / "shared" / "seed" / "openai-integration.md"
BAD_KEY = "mtk_" + "G" * 43 + "="


def seed_block(heading: str) -> str:
    text = SEED.read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", text[text.index(heading) :], re.S)
    assert match
    return match.group(1)


@pytest.fixture
def key(live_server: LiveServer) -> str:
    return new_cli_key(live_server.data_dir)[1]


@pytest.fixture
async def client(live_server: LiveServer, key: str) -> AsyncIterator[AsyncMemtrace]:
    async with AsyncMemtrace(live_server.url, key) as c:
        yield c


def first_input_text(model: ScriptedModel) -> str:
    item = model.calls[0].input[0]
    assert isinstance(item, dict)
    return str(item["content"])


def test_tools_have_strict_schemas_with_optional_parameters() -> None:
    tools = create_memtrace_tools(AsyncMemtrace("http://x", "k"), agent_id="a")
    assert [t.name for t in tools] == [
        "memtrace_remember",
        "memtrace_recall",
        "memtrace_search",
        "memtrace_decide",
    ]
    remember = tools[0].params_json_schema
    assert tools[0].strict_json_schema is True
    assert remember["properties"]["content"]["type"] == "string"
    # strict mode lists every property as required; optional ones must accept null
    for name in ("tags", "importance", "memory_type", "event_type", "agent_id"):
        assert {"type": "null"} in remember["properties"][name]["anyOf"], name
    for tool in tools:
        assert "agent_id" in tool.params_json_schema["properties"]
        for name, prop in tool.params_json_schema["properties"].items():
            assert prop.get("description"), f"{tool.name}.{name}"


@pytest.mark.anyio
async def test_seed_quick_start_runs_as_written(live_server: LiveServer, key: str) -> None:
    chat = ScriptedChatServer(
        [
            [
                (
                    "memtrace_remember",
                    {
                        "content": "User needs help with their account",
                        "tags": ["support"],
                        "importance": None,
                        "memory_type": None,
                        "event_type": None,
                        "agent_id": None,
                    },
                )
            ],
            "Happy to help with your account.",
        ]
    ).start()
    set_default_openai_client(
        AsyncOpenAI(api_key="scripted", base_url=chat.base_url, max_retries=0),
        use_for_tracing=False,
    )
    set_default_openai_api("chat_completions")
    try:
        code = seed_block("### Quick Start").replace(
            '"http://localhost:9100"', repr(live_server.url)
        )
        code = code.replace('"mtk_your_api_key"', repr(key))
        namespace: dict[str, Any] = {"__name__": "seed"}
        exec(compile(code, "seed-quick-start", "exec"), namespace)
        await namespace["main"]()
    finally:
        set_default_openai_api("responses")
        chat.stop()
    headers = {"x-api-key": key}
    (session,) = httpx.get(live_server.url + "/api/v1/sessions", headers=headers).json()["sessions"]
    assert session["agent_id"] == "support_agent" and session["status"] == "closed"
    memories = httpx.get(
        live_server.url + "/api/v1/memories", params={"agent_id": "support_agent"}, headers=headers
    ).json()["memories"]
    by_event = {m["event_type"]: m for m in memories}
    assert by_event["general"]["content"] == "User needs help with their account"
    assert "session_id" not in by_event["general"]  # the quick start binds the tools to no session
    assert by_event["user_message"]["content"] == "I need help with my account"
    assert by_event["user_message"]["session_id"] == session["id"]
    assert len(chat.requests) == 2


@pytest.mark.anyio
async def test_second_session_starts_with_what_the_first_remembered(client: AsyncMemtrace) -> None:
    tools = create_memtrace_tools(client, agent_id="support_agent")
    first = await MemtraceSession.create(client, agent_id="support_agent")
    model1 = ScriptedModel(
        [
            [
                function_call(
                    "memtrace_remember",
                    {
                        "content": "Customer Dana uses the Pro plan",
                        "tags": ["plan"],
                        "importance": 0.9,
                        "memory_type": "entity",
                        "event_type": None,
                        "agent_id": None,
                    },
                    call_id="c1",
                )
            ],
            [assistant_message("Noted.", item_id="m1")],
        ]
    )
    agent = Agent(name="Support", instructions="Help.", tools=tools, model=model1)
    await Runner.run(agent, "I'm Dana, on the Pro plan", session=first)
    model1.assert_complete()
    # the first session had no prior memory to inject
    assert first_input_text(model1) == "I'm Dana, on the Pro plan"
    await first.close()

    second = await MemtraceSession.create(client, agent_id="support_agent", context_max_tokens=2000)
    model2 = ScriptedModel([[assistant_message("Welcome back, Dana.", item_id="m2")]])
    await Runner.run(
        Agent(name="Support", instructions="Help.", tools=tools, model=model2),
        "Hi again",
        session=second,
    )
    first_item = model2.calls[0].input[0]
    assert isinstance(first_item, dict) and first_item["role"] == "system"
    assert "## Agent Context (support_agent)" in first_item["content"]
    assert "### Other (2)" in first_item["content"]  # an entity and the user message
    assert "general: Customer Dana uses the Pro plan" in first_item["content"]
    assert "user_message: I'm Dana, on the Pro plan" in first_item["content"]
    assert model2.calls[0].input[-1] == {"content": "Hi again", "role": "user"}


@pytest.mark.anyio
async def test_a_401_reaches_the_seed_error_handler(
    live_server: LiveServer, client: AsyncMemtrace, capsys: pytest.CaptureFixture[str]
) -> None:
    session = await MemtraceSession.create(client, agent_id="support_agent", inject_context=False)
    async with AsyncMemtrace(live_server.url, BAD_KEY) as bad:
        model = ScriptedModel(
            [
                [
                    function_call(
                        "memtrace_recall",
                        {"since": None, "limit": None, "memory_type": None, "agent_id": None},
                        call_id="c1",
                    )
                ]
            ]
        )
        agent = Agent(
            name="A",
            instructions="i",
            tools=create_memtrace_tools(bad, "support_agent"),
            model=model,
        )
        # the seed's error-handling snippet, as written, with the agent and session above
        snippet = seed_block("### Error Handling")
        code = compile(snippet, "seed-error-handling", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        await eval(code, {"__name__": "seed", "Runner": Runner, "agent": agent, "session": session})
    assert capsys.readouterr().out.strip() == "Invalid Memtrace API key"

    async with AsyncMemtrace(live_server.url, BAD_KEY) as bad:
        model = ScriptedModel(
            [
                [
                    function_call(
                        "memtrace_decide",
                        {"decision": "d", "reasoning": "r", "agent_id": None},
                        call_id="c2",
                    )
                ]
            ]
        )
        agent = Agent(
            name="A", instructions="i", tools=create_memtrace_tools(bad, "a"), model=model
        )
        with pytest.raises(MemtraceError) as caught:
            await Runner.run(agent, "go")
    assert isinstance(caught.value, AuthenticationError) and caught.value.status_code == 401
    assert caught.value.message == "invalid API key"


@pytest.mark.anyio
async def test_model_mistakes_go_back_to_the_model(client: AsyncMemtrace) -> None:
    model = ScriptedModel(
        [
            [
                function_call(
                    "memtrace_recall",
                    {"since": "whenever", "limit": None, "memory_type": None, "agent_id": None},
                    call_id="c1",
                )
            ],
            [
                function_call(
                    "memtrace_remember",
                    {
                        "content": "x",
                        "tags": None,
                        "importance": 5,
                        "memory_type": None,
                        "event_type": None,
                        "agent_id": None,
                    },
                    call_id="c2",
                )
            ],
            [assistant_message("ok", item_id="m1")],
        ]
    )
    agent = Agent(name="A", instructions="i", tools=create_memtrace_tools(client, "a"), model=model)
    result = await Runner.run(agent, "go")
    assert result.final_output == "ok"
    outputs = [
        i
        for i in model.calls[2].input
        if isinstance(i, dict) and i.get("type") == "function_call_output"
    ]
    assert '"status":400' in outputs[0]["output"] and "invalid since" in outputs[0]["output"]
    assert "importance" in outputs[1]["output"]


@pytest.mark.anyio
async def test_resume_by_id_rebuilds_the_same_history(live_server: LiveServer, key: str) -> None:
    async with AsyncMemtrace(live_server.url, key) as c1:
        s1 = await MemtraceSession.create(
            c1, agent_id="helper", inject_context=False, persist_assistant_messages=True
        )
        for n, text in enumerate(["hello", "hello", "tell me more"]):  # a repeated message is kept
            model = ScriptedModel([[assistant_message(f"answer {n}", item_id=f"msg_{n}")]])
            await Runner.run(Agent(name="A", instructions="i", model=model), text, session=s1)
        before = await s1.get_items()
        sid = s1.session_id
    del s1
    assert len(before) == 6
    async with AsyncMemtrace(live_server.url, key) as c2:  # a new process would start here
        resumed = await MemtraceSession.create(
            c2,
            agent_id="helper",
            session_id=sid,
            inject_context=False,
            persist_assistant_messages=True,
        )
        assert resumed.session_id == sid
        assert await resumed.get_items() == before
        assert await resumed.get_items(limit=2) == before[-2:]
        model = ScriptedModel([[assistant_message("answer 3", item_id="msg_3")]])
        await Runner.run(Agent(name="A", instructions="i", model=model), "again", session=resumed)
        assert model.calls[0].input[:6] == before
    async with AsyncMemtrace(live_server.url, key) as c3:
        again = await MemtraceSession.create(
            c3, agent_id="helper", session_id=sid, inject_context=False
        )
        assert len(await again.get_items()) == 8


@pytest.mark.anyio
async def test_list_content_is_persisted_and_failures_are_logged(
    live_server: LiveServer, client: AsyncMemtrace, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    session = await MemtraceSession.create(client, agent_id="parts", inject_context=False)
    await session.add_items(
        [{"role": "user", "content": [{"type": "input_text", "text": "from parts"}]}]
    )
    listed = httpx.get(
        live_server.url + f"/api/v1/sessions/{session.session_id}/memories",
        headers={"x-api-key": key},
    ).json()
    assert [m["content"] for m in listed["memories"]] == ["from parts"]
    assert await session.pop_item() is not None and await session.get_items() == []
    async with AsyncMemtrace(live_server.url, BAD_KEY, max_retries=0) as bad:
        broken = MemtraceSession(bad, "parts", session.session_id)
        with caplog.at_level(logging.WARNING, logger="openai_agents_memtrace"):
            await broken.add_items([{"role": "user", "content": "lost?"}])
    assert await broken.get_items() == [{"role": "user", "content": "lost?"}]
    assert any("status 401" in r.getMessage() for r in caplog.records)


def test_quickstart_example_runs_offline_twice(live_server: LiveServer, key: str) -> None:
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env.update(MEMTRACE_URL=live_server.url, MEMTRACE_API_KEY=key)
    script = str(ROOT / "examples" / "agents" / "quickstart.py")
    first = subprocess.run(
        [sys.executable, script], capture_output=True, text=True, env=env, timeout=120
    )
    assert first.returncode == 0, first.stderr
    assert "No prior memory for support_agent yet." in first.stdout
    assert "I'll remember that." in first.stdout
    second = subprocess.run(
        [sys.executable, script], capture_output=True, text=True, env=env, timeout=120
    )
    assert second.returncode == 0, second.stderr
    assert "## Agent Context (support_agent)" in second.stdout
    assert "User said: My name is Dana" in second.stdout


@pytest.mark.anyio
async def test_forget_tool_is_opt_in_and_scoped_to_the_agent(client: AsyncMemtrace) -> None:
    assert len(create_memtrace_tools(client, "a")) == 4
    tools = create_memtrace_tools(client, "support_agent", include_forget=True)
    assert tools[-1].name == "memtrace_forget"
    mine = await client.remember("support_agent", "old address: 1 Main St")
    theirs = await client.remember("billing_agent", "card on file")
    model = ScriptedModel(
        [
            [
                function_call("memtrace_forget", {"memory_id": theirs.id}, call_id="f1"),
                function_call("memtrace_forget", {"memory_id": mine.id}, call_id="f2"),
            ],
            [assistant_message("Forgotten.", item_id="m_forget")],
        ]
    )
    await Runner.run(
        Agent(name="A", instructions="i", tools=tools, model=model), "forget my address"
    )
    outputs = [
        i["output"]
        for i in model.calls[1].input
        if isinstance(i, dict) and i.get("type") == "function_call_output"
    ]
    assert "another agent" in outputs[0] and '"forgotten":true' in outputs[1]
    assert (await client.recall("support_agent")).count == 0
    assert (await client.recall("billing_agent")).count == 1
