"""The tool catalogue (``memtrace.toolkit``) against its three bindings.

Every integration (Chat Completions, the Agents SDK, MCP) must offer the catalogue's tools
with exactly its arguments, the agent binding aside, and every argument a model gives must
reach the server: a recorder around the real app keeps what each request carried.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx
import pytest
from agents import Agent, Runner
from agents.testing import ScriptedModel, assistant_message, function_call
from mcp import Client
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from memtrace import AsyncMemtrace
from memtrace.mcp import build_server
from memtrace.openai import MEMTRACE_TOOLS, AsyncMemtraceToolbox
from memtrace.toolkit import (
    BINDING_ARGUMENTS,
    CATALOGUE,
    CORE_TOOLS,
    FORGET,
    MCP_TOOLS,
    Binding,
    Tool,
)
from openai_agents_memtrace import create_memtrace_tools

from conftest import ROOT, App

BOUND_AGENT = "bound_agent"
BOUND_SESSION = "sess_bound"


# -- the recorder: what reached the real app --------------------------------------------


@dataclass
class Received:
    """One request as the app received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any

    def leaves(self) -> set[str]:
        """Every scalar the request carried: path segments, query values, JSON leaves."""
        out = {unquote(segment) for segment in self.path.split("/")}
        for values in self.query.values():
            for value in values:
                out.update({value, *value.split(",")})
        _json_leaves(self.body, out)
        return out


def _json_leaves(value: Any, out: set[str]) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _json_leaves(item, out)
    elif isinstance(value, list):
        for item in value:
            _json_leaves(item, out)
    elif value is not None:
        out.add(str(value))


class RequestRecorder:
    """ASGI middleware around the real app that keeps every HTTP request it receives."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[Received] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def recording_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        try:
            await self.app(scope, recording_receive, send)
        finally:
            raw = b"".join(chunks)
            self.requests.append(
                Received(
                    scope["method"],
                    scope["path"],
                    parse_qs(scope["query_string"].decode()),
                    json.loads(raw) if raw else None,
                )
            )

    def take(self) -> list[Received]:
        """The requests received since the last ``take``."""
        taken, self.requests = self.requests, []
        return taken


@pytest.fixture
def recorder(app: App) -> RequestRecorder:
    return RequestRecorder(app.client.app)


@pytest.fixture
async def client(
    recorder: RequestRecorder, org_key: tuple[str, str]
) -> AsyncIterator[AsyncMemtrace]:
    transport = httpx.ASGITransport(app=recorder)
    async with AsyncMemtrace("http://testserver", org_key[1], transport=transport) as c:
        yield c


# -- what each integration offers --------------------------------------------------------


@dataclass(frozen=True)
class Offered:
    """One argument as an integration shows it to the model, normalised."""

    schema: dict[str, Any]  # the JSON Schema of the value, null alternative removed
    description: str
    optional: bool


def normalise(parameters: dict[str, Any]) -> dict[str, Offered]:
    """Argument name → what the model sees, whatever the integration's schema style."""
    required = set(parameters.get("required", []))
    out = {}
    for name, prop in parameters["properties"].items():
        alternatives = prop.get("anyOf", [prop])
        nullable = {"type": "null"} in alternatives
        (schema,) = [a for a in alternatives if a != {"type": "null"}]
        keep = {"type", "enum", "items", "minimum", "maximum"}
        out[name] = Offered(
            {k: v for k, v in schema.items() if k in keep},
            prop["description"],
            name not in required or nullable,
        )
    return out


def catalogue_view(tool: Tool) -> dict[str, Offered]:
    return normalise(Binding(agent_id=BOUND_AGENT).json_schema(tool))


def without_binding(tool: Tool, offered: dict[str, Offered]) -> dict[str, Offered]:
    """The arguments a binding did not add (a tool's own ``agent_id`` stays)."""
    own = {a.name for a in tool.arguments}
    return {k: v for k, v in offered.items() if k in own or k not in BINDING_ARGUMENTS}


async def mcp_offered(client: AsyncMemtrace) -> dict[str, tuple[str, dict[str, Offered]]]:
    async with Client(build_server(client)) as mcp:
        tools = (await mcp.list_tools()).tools
    return {t.name: (t.description or "", normalise(t.input_schema)) for t in tools}


def chat_offered(definitions: list[dict[str, Any]]) -> dict[str, tuple[str, dict[str, Offered]]]:
    return {
        d["function"]["name"]: (
            d["function"]["description"],
            normalise(d["function"]["parameters"]),
        )
        for d in definitions
    }


@pytest.mark.anyio
async def test_every_integration_offers_the_catalogue(client: AsyncMemtrace) -> None:
    agents_tools = create_memtrace_tools(client, BOUND_AGENT, include_forget=True)
    toolbox = AsyncMemtraceToolbox(client, BOUND_AGENT, include_forget=True)
    offered = {
        "chat": chat_offered(toolbox.tools),
        "agents": {t.name: (t.description, normalise(t.params_json_schema)) for t in agents_tools},
        "mcp": await mcp_offered(client),
    }
    bound_tools = [t.name for t in (*CORE_TOOLS, FORGET)]
    assert list(offered["chat"]) == list(offered["agents"]) == bound_tools
    assert list(offered["mcp"]) == [t.name for t in MCP_TOOLS] == list(CATALOGUE)
    assert [d["function"]["name"] for d in MEMTRACE_TOOLS] == [t.name for t in CORE_TOOLS]
    assert toolbox.tools[:4] == MEMTRACE_TOOLS
    assert [t.name for t in create_memtrace_tools(client, "a")] == [t.name for t in CORE_TOOLS]
    for integration, tools in offered.items():
        for name, (description, arguments) in tools.items():
            tool = CATALOGUE[name]
            where = f"{integration} {name}"
            assert description == tool.description, where
            assert without_binding(tool, arguments) == catalogue_view(tool), where
            assert list(without_binding(tool, arguments)) == [a.name for a in tool.arguments]
    # the agent binding: MCP serves any agent, so agent and session are its arguments
    mcp_remember = offered["mcp"]["memtrace_remember"][1]
    assert not mcp_remember["agent_id"].optional and mcp_remember["session_id"].optional
    assert offered["mcp"]["memtrace_search"][1]["agent_id"].optional
    # the Agents tools may work in another agent's memory (never forget); Chat Completions
    # tools act as their agent only
    assert all(
        ("agent_id" in arguments) == (name != "memtrace_forget")
        for name, (_, arguments) in offered["agents"].items()
    )
    assert not any("agent_id" in arguments for _, arguments in offered["chat"].values())


# -- every argument reaches the server ----------------------------------------------------


def example_arguments(arguments: Any) -> dict[str, Any]:
    return {a.name: a.example for a in arguments}


# memtrace_forget checks in the SDK that the memory is the agent's own: the server has no
# agent-scoped delete, so that argument never travels.
CHECKED_IN_THE_SDK = {("memtrace_forget", "agent_id")}


def assert_reached(tool: Tool, sent: dict[str, Any], received: list[Received], where: str) -> None:
    assert received, f"{where}: {tool.name} sent no request"
    leaves = set().union(*(r.leaves() for r in received))
    for name, value in sent.items():
        if (tool.name, name) in CHECKED_IN_THE_SDK:
            continue
        values = value if isinstance(value, list) else [value]
        if isinstance(value, dict):
            values = list(value.values())
        missing = [v for v in values if str(v) not in leaves]
        assert not missing, f"{where}: {tool.name}.{name}={value!r} never reached the server"


async def call_chat(client: AsyncMemtrace, tool: Tool, args: dict[str, Any]) -> None:
    box = AsyncMemtraceToolbox(client, BOUND_AGENT, BOUND_SESSION, include_forget=True)
    call = ChatCompletionMessageFunctionToolCall.model_validate(
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": tool.name, "arguments": json.dumps(args)},
        }
    )
    (reply,) = await box.handle_tool_calls([call])
    assert "bad arguments" not in reply["content"], reply


async def call_agents(client: AsyncMemtrace, tool: Tool, args: dict[str, Any]) -> None:
    tools = create_memtrace_tools(client, BOUND_AGENT, BOUND_SESSION, include_forget=True)
    model = ScriptedModel(
        [
            [function_call(tool.name, args, call_id="call_1")],
            [assistant_message("done", item_id=f"msg_{tool.name}")],
        ]
    )
    result = await Runner.run(Agent(name="A", instructions="i", tools=tools, model=model), "go")
    assert result.final_output == "done"
    output = [i for i in model.calls[1].input if isinstance(i, dict) and "output" in i]
    assert "bad arguments" not in str(output), output


async def call_mcp(client: AsyncMemtrace, tool: Tool, args: dict[str, Any]) -> None:
    async with Client(build_server(client)) as mcp:
        result = await mcp.call_tool(tool.name, args)
    text = " ".join(getattr(part, "text", "") for part in result.content)
    assert "validation error" not in text.lower(), text


Caller = Callable[[AsyncMemtrace, Tool, dict[str, Any]], Awaitable[None]]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("integration", "binding", "tools"),
    [
        ("chat", Binding(BOUND_AGENT, BOUND_SESSION), (*CORE_TOOLS, FORGET)),
        (
            "agents",
            Binding(BOUND_AGENT, BOUND_SESSION, agent_override=True, read_session=True),
            (*CORE_TOOLS, FORGET),
        ),
        ("mcp", Binding(), MCP_TOOLS),
    ],
)
async def test_every_argument_reaches_the_server(
    client: AsyncMemtrace,
    recorder: RequestRecorder,
    integration: str,
    binding: Binding,
    tools: tuple[Tool, ...],
) -> None:
    caller: Caller = {"chat": call_chat, "agents": call_agents, "mcp": call_mcp}[integration]
    for tool in tools:
        args = example_arguments(binding.arguments(tool))
        recorder.take()
        await caller(client, tool, args)
        received = recorder.take()
        assert_reached(tool, args, received, integration)
        if binding.agent_id and tool.agent and "agent_id" not in args:
            assert_reached(tool, {"agent_id": BOUND_AGENT}, received, f"{integration} binding")
        if binding.agent_id and tool.session == "write":
            assert_reached(tool, {"session_id": BOUND_SESSION}, received, f"{integration} binding")


@pytest.mark.anyio
async def test_chat_search_ranks_by_the_query(client: AsyncMemtrace) -> None:
    """The model gets the best matches for its query, not the newest memories."""
    for content in (
        "The customer was charged twice for invoice 1042 and wants a refund",
        "User prefers dark mode",
        "Meeting moved to Thursday",
    ):
        await client.remember("support", content)
    box = AsyncMemtraceToolbox(client, "support")
    (reply,) = await box.handle_tool_calls(
        [
            {
                "id": "c1",
                "type": "function",
                "function": {
                    "name": "memtrace_search",
                    "arguments": json.dumps({"query": "invoice charged twice refund"}),
                },
            }
        ]
    )
    found = json.loads(reply["content"])["memories"]
    assert "invoice 1042" in found[0]["content"] and found[0]["score"] > 0


@pytest.mark.anyio
async def test_hybrid_mode_without_semantic_search_is_text_for_the_model(
    client: AsyncMemtrace,
) -> None:
    box = AsyncMemtraceToolbox(client, "support")
    arguments = json.dumps({"query": "refund", "mode": "hybrid"})
    (reply,) = await box.handle_tool_calls(
        [
            {
                "id": "h",
                "type": "function",
                "function": {"name": "memtrace_search", "arguments": arguments},
            }
        ]
    )
    answer = json.loads(reply["content"])
    assert answer["status"] == 400 and "hybrid" in answer["error"]


# -- the README's table is the catalogue's -------------------------------------------------


def argument_type(argument: Any) -> str:
    schema = argument.json_schema()
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if schema["type"] == "array":
        items = schema["items"]
        inner = " \\| ".join(f"`{v}`" for v in items["enum"]) if "enum" in items else items["type"]
        return f"list of {inner}"
    bounds = ""
    if argument.minimum is not None or argument.maximum is not None:
        low = "" if argument.minimum is None else f"{argument.minimum:g}"
        high = "" if argument.maximum is None else f"{argument.maximum:g}"
        bounds = f" {low}–{high}" if high else f" ≥ {low}"
    return f"{schema['type']}{bounds}"


def catalogue_table() -> str:
    """The README's table of tools and arguments, generated from the catalogue."""
    where = {t.name: "all" for t in CORE_TOOLS}
    where[FORGET.name] = "MCP; opt-in elsewhere"
    lines = [
        "| tool | offered by | argument | type | default | description |",
        "|---|---|---|---|---|---|",
    ]
    for tool in MCP_TOOLS:
        first = f"`{tool.name}`", where.get(tool.name, "MCP")
        for argument in tool.arguments:
            default = "required" if argument.required else f"{argument.default or ''}"
            lines.append(
                f"| {first[0]} | {first[1]} | `{argument.name}` | {argument_type(argument)} "
                f"| {default} | {argument.description} |"
            )
            first = "", ""
    return "\n".join(lines) + "\n"


def test_readme_table_is_generated_from_the_catalogue() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = catalogue_table()
    assert table in readme, "README's tool table is stale; replace it with:\n\n" + table


def test_the_catalogue_imports_no_integration_framework() -> None:
    import subprocess
    import sys

    code = (
        "import sys, memtrace.toolkit, memtrace.openai\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "assert not loaded & {'openai', 'agents', 'mcp'}, loaded & {'openai', 'agents', 'mcp'}"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.anyio
async def test_search_explain_says_why_to_the_model_and_over_mcp(client: AsyncMemtrace) -> None:
    await client.remember("support", "The customer was charged twice for invoice 1042")
    box = AsyncMemtraceToolbox(client, "support")
    arguments = json.dumps({"query": "charged twice", "explain": True})
    (reply,) = await box.handle_tool_calls(
        [
            {
                "id": "e",
                "type": "function",
                "function": {"name": "memtrace_search", "arguments": arguments},
            }
        ]
    )
    why = json.loads(reply["content"])["memories"][0]["why"]
    assert why["text_score"] > 0 and why["recency_factor"] == why["importance_factor"] == 1
    async with Client(build_server(client)) as mcp:
        result = await mcp.call_tool(
            "memtrace_search", {"agent_id": "support", "query": "charged twice", "explain": True}
        )
    (found,) = result.structured_content["results"]
    assert found["explanation"]["final_score"] == pytest.approx(found["score"], abs=1e-4)
