"""The Memtrace tool catalogue: every memory tool a model can call, written once.

Each ``Tool`` holds its name, description and arguments (type, description, default,
bounds, nullability), the SDK operations a call becomes, and the reply text a model
reads. The integrations only bind it:

* ``memtrace.openai``: Chat Completions definitions (``MEMTRACE_TOOLS``) and toolboxes;
* ``memtrace.mcp``: the MCP server;
* ``openai_agents_memtrace``: Agents SDK function tools.

A ``Binding`` is what an integration fixes so that the model need not say it: the agent
and the session. ``Binding.plan`` turns a model's arguments into ``Steps``, a generator of
``Call`` objects (sans-I/O, like the clients' operations); ``run_steps`` and
``arun_steps`` drive them with a sync or async client. This module imports only the SDK,
the standard library and pydantic.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args, get_origin

import pydantic

from memtrace import _operations as ops
from memtrace._base import Call
from memtrace.async_client import AsyncMemtrace
from memtrace.client import Memtrace
from memtrace.exceptions import ConflictError, MemtraceError
from memtrace.models import Agent, Memory, MemoryList, SearchResult, Session

Steps = Generator[Call[Any], Any, Any]
"""The SDK calls of one tool call: each yielded ``Call``'s result is sent back in."""

MemoryTypeArg = Literal["episodic", "session", "decision", "entity"]
SearchMode = Literal["bm25", "hybrid"]

TOOL_LIMIT = 50  # the server's default for search, and the tools' for recall as well
MAX_TOOL_LIMIT = 200  # a model reads every result: keep a reply within a context window


# -- reply texts: compact JSON, ids, times and contents, no null noise -------------------


def to_json(value: Any) -> str:
    """Compact JSON, non-ASCII kept readable."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def compact_memory(m: Memory) -> dict[str, Any]:
    """The fields a model needs from a memory."""
    out: dict[str, Any] = {"id": m.id, "time": m.time.isoformat(), "type": m.memory_type}
    out["content"] = m.content
    if m.tags:
        out["tags"] = m.tags
    if m.importance:
        out["importance"] = m.importance
    if m.session_id:
        out["session_id"] = m.session_id
    if m.metadata and "reasoning" in m.metadata:
        out["reasoning"] = m.metadata["reasoning"]
    if m.score is not None:
        out["score"] = round(m.score, 4)
    if m.explanation is not None:
        out["why"] = m.explanation.model_dump(exclude_none=True)
    return out


def stored_text(m: Memory) -> str:
    """Result of a remember call."""
    return to_json({"stored": True, "id": m.id, "time": m.time.isoformat()})


def logged_text(m: Memory) -> str:
    """Result of a decide call."""
    return to_json({"logged": True, "id": m.id, "time": m.time.isoformat()})


def list_text(result: MemoryList | SearchResult) -> str:
    """Result of a recall or search call."""
    items = [compact_memory(m) for m in result.memories]
    return to_json({"count": len(items), "memories": items})


def model_text(value: pydantic.BaseModel) -> str:
    """Any response model as compact JSON without null fields."""
    return to_json(value.model_dump(mode="json", exclude_none=True))


DUPLICATE_TEXT = to_json(
    {"stored": False, "duplicate": True, "note": "an identical memory was stored recently"}
)


def error_text(error: MemtraceError) -> str:
    """An error the model can read and act on."""
    return to_json({"error": error.message, "status": error.status_code})


class ToolCallRefused(Exception):
    """A tool call refused before or between its SDK calls: bad arguments, or not allowed.

    Every integration tells the model ``message`` so it can correct itself.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def failure_text(tool: Tool | None, error: MemtraceError | ToolCallRefused) -> str:
    """What the model reads when a call of ``tool`` failed."""
    if isinstance(error, ToolCallRefused):
        return to_json({"error": error.message})
    if isinstance(error, ConflictError) and tool is not None and tool.on_conflict:
        return tool.on_conflict
    return error_text(error)


# -- the catalogue's vocabulary -----------------------------------------------------------


@dataclass(frozen=True)
class Argument:
    """One argument of a tool.

    ``type`` is a Python annotation (``str``, ``int``, ``float``, ``list[str]``, a
    ``Literal``, ``dict[str, Any]``). An optional argument is nullable everywhere: null
    or absent means ``default``, and a ``default`` of None means the server decides
    (the description then says what it does). ``example`` is a value a test sends to
    prove the argument reaches the server.
    """

    name: str
    type: Any
    description: str
    required: bool = False
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    example: Any = field(default=None, compare=False)

    @property
    def text(self) -> str:
        """The description the model reads, its default included."""
        if self.default is None:
            return self.description
        return f"{self.description} Default {self.default}."

    def annotation(self) -> Any:
        """The pydantic annotation that validates this argument."""
        constraints = pydantic.Field(description=self.text, ge=self.minimum, le=self.maximum)
        kind = self.type if self.required else self.type | None
        return Annotated[kind, constraints]

    def json_schema(self, *, nullable: bool = False) -> dict[str, Any]:
        """The JSON Schema of this argument; ``nullable`` also accepts null."""
        schema = _json_type(self.type)
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if nullable and not self.required:
            return {"anyOf": [schema, {"type": "null"}], "description": self.text}
        return {**schema, "description": self.text}


def _json_type(tp: Any) -> dict[str, Any]:
    origin = get_origin(tp)
    if origin is Literal:
        values = list(get_args(tp))
        return {"type": "string", "enum": values}
    if origin is list:
        return {"type": "array", "items": _json_type(get_args(tp)[0])}
    if origin is dict or tp is dict:
        return {"type": "object"}
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if tp in names:
        return {"type": names[tp]}
    raise TypeError(f"no JSON Schema for tool argument type {tp!r}")


AgentUse = Literal["owner", "filter"]
SessionUse = Literal["write", "read"]


@dataclass(frozen=True)
class Tool:
    """One tool: its contract with the model and what a call does.

    ``agent`` says how the tool uses an agent id (``owner``: it acts as that agent;
    ``filter``: it narrows a search), ``session`` how it uses a session (``write`` into
    it, ``read`` from it); a ``Binding`` supplies both or turns them into arguments.
    ``steps`` gets the validated arguments, defaults filled and ``agent_id`` /
    ``session_id`` resolved, and returns the SDK calls; ``reply`` words their result for
    the model, ``on_conflict`` replaces a 409 (a duplicate memory), and ``result`` is
    the type of the raw result (structured output where the integration has it).
    """

    name: str
    description: str
    arguments: tuple[Argument, ...]
    steps: Callable[[dict[str, Any]], Steps]
    reply: Callable[[Any], str]
    result: Any
    agent: AgentUse | None = None
    session: SessionUse | None = None
    agent_override: bool = True
    on_conflict: str | None = None


# -- binding arguments: the agent and the session ----------------------------------------

_AGENT_OWNER = Argument(
    "agent_id",
    str,
    "Your agent id, e.g. 'claude_code' (letters, digits, _ -).",
    required=True,
    example="agent_under_test",
)
_AGENT_FILTER = Argument("agent_id", str, "Only this agent's memories.", example="agent_under_test")
_AGENT_OVERRIDE = Argument(
    "agent_id",
    str,
    "Another agent's id, to work in its memory instead of yours (shared memory).",
    example="agent_under_test",
)
_SESSION_WRITE = Argument(
    "session_id", str, "Session this belongs to, if any.", example="sess_under_test"
)
_SESSION_READ = Argument(
    "session_id", str, "Only memories of this session.", example="sess_under_test"
)
BINDING_ARGUMENTS = frozenset({"agent_id", "session_id"})


@dataclass(frozen=True)
class Binding:
    """What an integration fixes so the model does not have to say it.

    With no ``agent_id`` (the MCP server, which serves any agent) the agent and the
    session are arguments of the tools. With an ``agent_id`` they are bound:
    ``remember`` and ``decide`` write as that agent into ``session_id``; recall and search
    read that agent's memories, and that session's only when ``read_session``.
    ``agent_override`` adds an optional ``agent_id`` argument to work in another agent's
    memory (never for ``memtrace_forget``).
    """

    agent_id: str | None = None
    session_id: str | None = None
    agent_override: bool = False
    read_session: bool = False

    def arguments(self, tool: Tool) -> tuple[Argument, ...]:
        """The arguments the model sees for ``tool`` under this binding."""
        if self.agent_id is None:
            agent = {"owner": (_AGENT_OWNER,), "filter": (_AGENT_FILTER,), None: ()}[tool.agent]
            session = {"write": (_SESSION_WRITE,), "read": (_SESSION_READ,), None: ()}
            return (*agent, *tool.arguments, *session[tool.session])
        if tool.agent and tool.agent_override and self.agent_override:
            return (*tool.arguments, _AGENT_OVERRIDE)
        return tool.arguments

    def json_schema(self, tool: Tool, *, nullable: bool = False) -> dict[str, Any]:
        """The tool's parameters as a JSON Schema object."""
        arguments = self.arguments(tool)
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {a.name: a.json_schema(nullable=nullable) for a in arguments},
        }
        required = [a.name for a in arguments if a.required]
        if required:
            schema["required"] = required
        return schema

    def plan(self, tool: Tool, arguments: Mapping[str, Any] | str | None) -> Steps:
        """Validate the model's arguments (a dict or its JSON text) and plan the calls.

        Raises ``ToolCallRefused`` for arguments that are not valid.
        """
        args = _validate(tool.name, self.arguments(tool), arguments)
        if self.agent_id is None:
            return tool.steps(args)
        if tool.agent:
            args["agent_id"] = args.get("agent_id") or self.agent_id
        if tool.session:
            read = self.read_session or tool.session == "write"
            args["session_id"] = self.session_id if read else None
        return tool.steps(args)


def _validate(
    name: str, arguments: tuple[Argument, ...], raw: Mapping[str, Any] | str | None
) -> dict[str, Any]:
    try:
        data = json.loads(raw or "{}") if isinstance(raw, str) else dict(raw or {})
        if not isinstance(data, dict):
            raise ValueError("arguments must be a JSON object")
        checked = _validator(arguments).model_validate(data)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ToolCallRefused(f"bad arguments for {name}: {where}: {first['msg']}") from error
    except ValueError as error:
        raise ToolCallRefused(f"bad arguments for {name}: {error}") from error
    values = checked.model_dump()
    return {a.name: a.default if values[a.name] is None else values[a.name] for a in arguments}


@functools.cache
def _validator(arguments: tuple[Argument, ...]) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {
        a.name: (a.annotation(), ...) if a.required else (a.annotation(), None) for a in arguments
    }
    config = pydantic.ConfigDict(extra="ignore")
    model: type[pydantic.BaseModel] = pydantic.create_model(
        "ToolArguments", __config__=config, **fields
    )
    return model


def run_steps(client: Memtrace, steps: Steps) -> Any:
    """Drive a tool call's steps with a sync client; return the raw result."""
    result: Any = None
    while True:
        try:
            call = steps.send(result)
        except StopIteration as done:
            return done.value
        result = client._execute(call)


async def arun_steps(client: AsyncMemtrace, steps: Steps) -> Any:
    """``run_steps`` with an async client."""
    result: Any = None
    while True:
        try:
            call = steps.send(result)
        except StopIteration as done:
            return done.value
        result = await client._execute(call)


# -- the catalogue ------------------------------------------------------------------------

_TIME_WINDOW = "Time window such as 30m, 2h, 24h, 7d or 2w, or an ISO 8601 timestamp."
_LIMIT = Argument(
    "limit",
    int,
    "At most this many memories.",
    default=TOOL_LIMIT,
    minimum=1,
    maximum=MAX_TOOL_LIMIT,
    example=7,
)


def _one_call(build: Callable[[dict[str, Any]], Call[Any]]) -> Callable[[dict[str, Any]], Steps]:
    """The steps of a tool that makes one SDK call and answers its result."""

    def steps(args: dict[str, Any]) -> Steps:
        return (yield build(args))

    return steps


def _remember(args: dict[str, Any]) -> Call[Memory]:
    return ops.remember(
        args["agent_id"],
        args["content"],
        session_id=args["session_id"],
        tags=args["tags"],
        importance=args["importance"],
        memory_type=args["memory_type"],
        event_type=args["event_type"],
        key=args["key"],
    )


REMEMBER = Tool(
    name="memtrace_remember",
    description="Store a memory for later recall: an action taken, something observed, "
    "a fact or preference learned.",
    arguments=(
        Argument(
            "content",
            str,
            "What to remember, in one self-contained sentence or more.",
            required=True,
            example="The customer was charged twice for invoice 1042",
        ),
        Argument(
            "tags",
            list[str],
            "Short labels to find it again (letters, digits, _ . -).",
            example=["billing", "refund"],
        ),
        Argument(
            "importance", float, "How much it matters, 0 to 1.", minimum=0, maximum=1, example=0.75
        ),
        Argument(
            "memory_type",
            MemoryTypeArg,
            "episodic (actions, observations; the default), decision, entity (a fact about "
            "someone or something) or session.",
            example="entity",
        ),
        Argument(
            "event_type",
            str,
            "Kind of event, such as observation or error (default general).",
            example="observation",
        ),
        Argument(
            "key",
            str,
            "To record a fact that can change — a preference, a status, a plan — give it a "
            "short stable key; remembering under the same key later replaces it.",
            example="customer_plan",
        ),
    ),
    steps=_one_call(_remember),
    reply=stored_text,
    result=Memory,
    agent="owner",
    session="write",
    on_conflict=DUPLICATE_TEXT,
)


def _recall(args: dict[str, Any]) -> Call[MemoryList]:
    return ops.list_memories(
        agent_id=args["agent_id"],
        session_id=args["session_id"],
        since=args["since"],
        memory_type=args["memory_type"],
        limit=args["limit"],
        order="desc",
    )


RECALL = Tool(
    name="memtrace_recall",
    description="Recall recent memories, newest first, within a time window.",
    arguments=(
        Argument("since", str, _TIME_WINDOW, default="24h", example="2h"),
        _LIMIT,
        Argument("memory_type", MemoryTypeArg, "Only memories of this type.", example="entity"),
    ),
    steps=_one_call(_recall),
    reply=list_text,
    result=MemoryList,
    agent="owner",
    session="read",
)


def _search(args: dict[str, Any]) -> Call[SearchResult]:
    return ops.search_memories(
        {
            "agent_id": args["agent_id"],
            "session_id": args["session_id"],
            "query": args["query"],
            "mode": args["mode"],
            "content_contains": args["content_contains"],
            "memory_types": args["memory_types"],
            "tags": args["tags"],
            "min_importance": args["min_importance"],
            "since": args["since"],
            "limit": args["limit"],
            "explain": args["explain"],
        }
    )


SEARCH = Tool(
    name="memtrace_search",
    description="Search memories by what they are about (query: best match first), text, "
    "types, tags, importance and time window.",
    arguments=(
        Argument(
            "query",
            str,
            "What you are looking for, in words; results come best match first.",
            example="invoice charged twice refund",
        ),
        Argument(
            "mode",
            SearchMode,
            "How query ranks: bm25 (words) or hybrid (words and meaning). Omit it and the "
            "server picks hybrid when it has semantic search, else bm25.",
            example="bm25",
        ),
        Argument(
            "content_contains",
            str,
            "Text the memory contains (case-sensitive).",
            example="charged",
        ),
        Argument(
            "memory_types",
            list[MemoryTypeArg],
            "Any of these memory types.",
            example=["entity", "episodic"],
        ),
        Argument("tags", list[str], "Tags the memory must all carry.", example=["billing"]),
        Argument(
            "min_importance",
            float,
            "Minimum importance, 0 to 1.",
            minimum=0,
            maximum=1,
            example=0.25,
        ),
        Argument("since", str, _TIME_WINDOW, example="3d"),
        _LIMIT,
        Argument(
            "explain",
            bool,
            "With query: say why each result was recalled (text score, semantic similarity, "
            "recency and importance factors, final score).",
            example=True,
        ),
    ),
    steps=_one_call(_search),
    reply=list_text,
    result=SearchResult,
    agent="filter",
    session="read",
)


def _decide(args: dict[str, Any]) -> Call[Memory]:
    return ops.decide(
        args["agent_id"], args["decision"], args["reasoning"], session_id=args["session_id"]
    )


DECIDE = Tool(
    name="memtrace_decide",
    description="Log a decision with its reasoning, for the audit trail.",
    arguments=(
        Argument(
            "decision",
            str,
            "What was decided.",
            required=True,
            example="Refund the duplicate charge",
        ),
        Argument(
            "reasoning",
            str,
            "Why: the evidence and trade-offs.",
            required=True,
            example="The bank statement shows two identical charges",
        ),
    ),
    steps=_one_call(_decide),
    reply=logged_text,
    result=Memory,
    agent="owner",
    session="write",
    on_conflict=DUPLICATE_TEXT,
)


def _forget(args: dict[str, Any]) -> Steps:
    memory: Memory = yield ops.get_memory(args["memory_id"])
    if memory.agent_id != args["agent_id"]:
        raise ToolCallRefused(
            f"memory {args['memory_id']} belongs to another agent; only your own can be forgotten"
        )
    yield ops.delete_memory(memory.id or args["memory_id"])
    return {"forgotten": True, "id": args["memory_id"]}


FORGET = Tool(
    name="memtrace_forget",
    description="Erase one of your own memories by id, permanently, when asked to forget "
    "something.",
    arguments=(
        Argument(
            "memory_id",
            str,
            "The id (mem_…) of the memory, as recall or search showed it.",
            required=True,
            example="mem_under_test",
        ),
    ),
    steps=_forget,
    reply=to_json,
    result=dict[str, Any],
    agent="owner",
    agent_override=False,
)


def _session_create(args: dict[str, Any]) -> Call[Session]:
    return ops.create_session({"agent_id": args["agent_id"], "metadata": args["metadata"]})


SESSION_CREATE = Tool(
    name="memtrace_session_create",
    description="Open a session to group the memories of one task; returns its id.",
    arguments=(
        Argument(
            "agent_id",
            str,
            "Agent id or name that owns the session.",
            required=True,
            example="agent_under_test",
        ),
        Argument("metadata", dict[str, Any], "Any JSON describing the task.", example={"t": "x"}),
    ),
    steps=_one_call(_session_create),
    reply=model_text,
    result=Session,
)


def _session_context(args: dict[str, Any]) -> Steps:
    context = yield ops.get_session_context(
        args["session_id"],
        {
            "since": args["since"],
            "include_types": args["include_types"],
            "max_tokens": args["max_tokens"],
            "query": args["query"],
            "mode": args["mode"],
        },
    )
    text: str = context.context
    return text


SESSION_CONTEXT = Tool(
    name="memtrace_session_context",
    description="A session's recent memories as markdown, ready to read (default window 24h).",
    arguments=(
        Argument(
            "session_id",
            str,
            "The session's id (sess_…).",
            required=True,
            example="sess_under_test",
        ),
        Argument("since", str, _TIME_WINDOW, example="5h"),
        Argument(
            "include_types", list[MemoryTypeArg], "Only these memory types.", example=["decision"]
        ),
        Argument(
            "max_tokens",
            int,
            "Token budget; the oldest lines are dropped first.",
            minimum=1,
            example=321,
        ),
        Argument(
            "query", str, "Keep the memories most relevant to this text.", example="cache race"
        ),
        Argument(
            "mode",
            SearchMode,
            "How query ranks: bm25 (words) or hybrid (words and meaning); the server picks "
            "hybrid when it can if omitted.",
            example="bm25",
        ),
    ),
    steps=_session_context,
    reply=str,
    result=str,
)


def _agent_register(args: dict[str, Any]) -> Call[Agent]:
    return ops.register_agent({"name": args["name"], "description": args["description"]})


AGENT_REGISTER = Tool(
    name="memtrace_agent_register",
    description="Register an agent by name; returns it with its generated id.",
    arguments=(
        Argument(
            "name",
            str,
            "Unique agent name in your organisation.",
            required=True,
            example="agent_registered",
        ),
        Argument("description", str, "What the agent does.", example="handles refunds"),
    ),
    steps=_one_call(_agent_register),
    reply=model_text,
    result=Agent,
)

CORE_TOOLS: tuple[Tool, ...] = (REMEMBER, RECALL, SEARCH, DECIDE)
"""The four memory tools every integration offers."""

MCP_TOOLS: tuple[Tool, ...] = (*CORE_TOOLS, SESSION_CREATE, SESSION_CONTEXT, AGENT_REGISTER, FORGET)
"""Every tool of the MCP server: the four, sessions, agents, and forget."""

CATALOGUE: dict[str, Tool] = {tool.name: tool for tool in MCP_TOOLS}
"""Every tool by name."""


def tool_set(*, include_forget: bool = False) -> tuple[Tool, ...]:
    """The tools of a bound integration: the four, and ``memtrace_forget`` when asked."""
    return (*CORE_TOOLS, FORGET) if include_forget else CORE_TOOLS


__all__ = [
    "CATALOGUE",
    "CORE_TOOLS",
    "DUPLICATE_TEXT",
    "MCP_TOOLS",
    "Argument",
    "Binding",
    "Steps",
    "Tool",
    "ToolCallRefused",
    "arun_steps",
    "compact_memory",
    "error_text",
    "failure_text",
    "list_text",
    "logged_text",
    "run_steps",
    "stored_text",
    "to_json",
    "tool_set",
]
