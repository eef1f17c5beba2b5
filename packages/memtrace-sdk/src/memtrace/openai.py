"""Memtrace memory tools for the OpenAI Chat Completions API.

``MEMTRACE_TOOLS`` are the four tool definitions to pass as ``tools=``; a
``MemtraceToolbox`` answers the model's tool calls. Nothing here imports ``openai``:
tool calls may be the ``openai`` objects or plain dicts of the same shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from memtrace import _operations as ops
from memtrace._base import Call
from memtrace.async_client import AsyncMemtrace
from memtrace.client import Memtrace
from memtrace.exceptions import ConflictError, MemtraceError
from memtrace.toolkit import (
    list_text,
    logged_text,
    stored_text,
    to_json,
)

_TIME_WINDOW = "Time window such as '30m', '2h', '24h' or '7d', or an ISO 8601 timestamp."

MEMTRACE_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "memtrace_remember",
            "description": "Store a memory for later recall: a fact, preference, observation or action.",
            "parameters": {
                "type": "object",
                "properties": {
                    "content": {"type": "string", "description": "What to remember."},
                    "tags": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Short labels (letters, digits, _ . -) to find it again.",
                    },
                    "importance": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": 1,
                        "description": "How much it matters, 0 to 1.",
                    },
                },
                "required": ["content"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "memtrace_recall",
            "description": "Retrieve recent memories, newest first.",
            "parameters": {
                "type": "object",
                "properties": {
                    "since": {"type": "string", "description": _TIME_WINDOW + " Default 24h."},
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 200,
                        "description": "At most this many (default 50).",
                    },
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "memtrace_search",
            "description": "Search memories by text, tags, importance and time window.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "description": "What you are looking for, in words: results come best match first.",
                    },
                    "content_contains": {
                        "type": "string",
                        "description": "Text the memory contains (case-sensitive).",
                    },
                    "tags": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Tags the memory must all carry.",
                    },
                    "min_importance": {
                        "type": "number",
                        "description": "Minimum importance, 0 to 1.",
                    },
                    "since": {"type": "string", "description": _TIME_WINDOW},
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 200,
                        "description": "At most this many (default 20).",
                    },
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "memtrace_decide",
            "description": "Log a decision with its reasoning, for the audit trail.",
            "parameters": {
                "type": "object",
                "properties": {
                    "decision": {"type": "string", "description": "What was decided."},
                    "reasoning": {"type": "string", "description": "Why."},
                },
                "required": ["decision", "reasoning"],
            },
        },
    },
]

TOOL_NAMES = frozenset(t["function"]["name"] for t in MEMTRACE_TOOLS)


@dataclass(frozen=True)
class _Plan:
    """What one tool call needs: an SDK call and how to word its result, or a ready reply."""

    tool_call_id: str
    call: Call[Any] | None = None
    render: Callable[[Any], str] = to_json
    reply: str | None = None

    def message(self, content: str) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": self.tool_call_id, "content": content}

    def failed(self, error: MemtraceError) -> dict[str, Any]:
        if (
            isinstance(error, ConflictError)
            and self.call is not None
            and self.call.method == "POST"
        ):
            return self.message(
                to_json(
                    {
                        "stored": False,
                        "duplicate": True,
                        "note": "an identical memory was stored recently",
                    }
                )
            )
        return self.message(to_json({"error": error.message, "status": error.status_code}))


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


class _ToolboxBase:
    def __init__(self, client: Any, agent_id: str, session_id: str | None = None) -> None:
        self.client = client
        self.agent_id = agent_id
        self.session_id = session_id

    def _plan(self, tool_call: Any) -> _Plan:
        call_id = str(_field(tool_call, "id") or "")
        function = _field(tool_call, "function")
        kind = _field(tool_call, "type") or "function"
        if kind != "function" or function is None:
            return _Plan(call_id, reply=to_json({"error": f"unsupported tool call type '{kind}'"}))
        name = _field(function, "name")
        if name not in TOOL_NAMES:
            return _Plan(call_id, reply=to_json({"error": f"unknown tool '{name}'"}))
        try:
            args = json.loads(_field(function, "arguments") or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
            return self._plan_tool(call_id, name, args)
        except (ValueError, TypeError, KeyError, MemtraceError) as error:
            text = error.message if isinstance(error, MemtraceError) else str(error)
            return _Plan(call_id, reply=to_json({"error": f"bad arguments for {name}: {text}"}))

    def _plan_tool(self, call_id: str, name: str, args: dict[str, Any]) -> _Plan:
        def limit(default: int) -> int:
            return max(1, min(int(args.get("limit") or default), 200))

        call: Call[Any]
        if name == "memtrace_remember":
            call = ops.add_memory(
                {
                    "agent_id": self.agent_id,
                    "session_id": self.session_id,
                    "content": str(args["content"]),
                    "tags": args.get("tags") or None,
                    "importance": args.get("importance"),
                }
            )
            return _Plan(
                call_id,
                call,
                stored_text,
            )
        if name == "memtrace_recall":
            call = ops.list_memories(
                agent_id=self.agent_id,
                since=args.get("since") or "24h",
                limit=limit(50),
                order="desc",
            )
            return _Plan(call_id, call, list_text)
        if name == "memtrace_search":
            call = ops.search_memories(
                {
                    "agent_id": self.agent_id,
                    "content_contains": args.get("content_contains"),
                    "tags": args.get("tags") or None,
                    "min_importance": args.get("min_importance"),
                    "since": args.get("since"),
                    "limit": limit(20),
                }
            )
            return _Plan(call_id, call, list_text)
        call = ops.decide(
            self.agent_id, str(args["decision"]), str(args["reasoning"]), session_id=self.session_id
        )
        return _Plan(
            call_id,
            call,
            logged_text,
        )


class MemtraceToolbox(_ToolboxBase):
    """Answers Chat Completions tool calls with a sync ``Memtrace`` client.

    Memories are written for ``agent_id`` (and ``session_id`` when given). Every tool
    call gets exactly one ``{"role": "tool", ...}`` message back; failures (bad JSON,
    unknown tools, server errors) become an error text for the model, never an exception.
    """

    def __init__(self, client: Memtrace, agent_id: str, session_id: str | None = None) -> None:
        super().__init__(client, agent_id, session_id)

    def handle_tool_calls(self, tool_calls: Iterable[Any] | None) -> list[dict[str, Any]]:
        """One tool message for each tool call, in order."""
        return [self._run(self._plan(tc)) for tc in tool_calls or ()]

    def _run(self, plan: _Plan) -> dict[str, Any]:
        if plan.call is None:
            return plan.message(plan.reply or "")
        try:
            return plan.message(plan.render(self.client._execute(plan.call)))
        except MemtraceError as error:
            return plan.failed(error)


class AsyncMemtraceToolbox(_ToolboxBase):
    """``MemtraceToolbox`` for an ``AsyncMemtrace`` client."""

    def __init__(self, client: AsyncMemtrace, agent_id: str, session_id: str | None = None) -> None:
        super().__init__(client, agent_id, session_id)

    async def handle_tool_calls(self, tool_calls: Iterable[Any] | None) -> list[dict[str, Any]]:
        """One tool message for each tool call, in order."""
        return [await self._run(self._plan(tc)) for tc in tool_calls or ()]

    async def _run(self, plan: _Plan) -> dict[str, Any]:
        if plan.call is None:
            return plan.message(plan.reply or "")
        try:
            return plan.message(plan.render(await self.client._execute(plan.call)))
        except MemtraceError as error:
            return plan.failed(error)


def _as_dict(message: Any) -> dict[str, Any]:
    if isinstance(message, Mapping):
        return dict(message)
    dumped: dict[str, Any] = message.model_dump(exclude_none=True)
    return dumped


def run_with_memory(
    openai_client: Any,
    messages: list[Any],
    toolbox: MemtraceToolbox,
    *,
    model: str = "gpt-4o",
    tools: list[dict[str, Any]] | None = None,
    max_rounds: int = 10,
    **create_kwargs: Any,
) -> Any:
    """Call the model until it stops asking for tools; return its final message.

    Assistant and tool messages are appended to ``messages`` (as dicts). After
    ``max_rounds`` rounds of tool calls the model is asked once more with tools disabled.
    """
    for round_number in range(max_rounds + 1):
        last = round_number == max_rounds
        response = openai_client.chat.completions.create(
            model=model,
            messages=messages,
            tools=tools or MEMTRACE_TOOLS,
            **({"tool_choice": "none"} if last else {}),
            **create_kwargs,
        )
        choice = response.choices[0]
        messages.append(_as_dict(choice.message))
        if choice.finish_reason != "tool_calls" or not choice.message.tool_calls or last:
            return choice.message
        messages.extend(toolbox.handle_tool_calls(choice.message.tool_calls))
    raise AssertionError("unreachable")


async def arun_with_memory(
    openai_client: Any,
    messages: list[Any],
    toolbox: AsyncMemtraceToolbox,
    *,
    model: str = "gpt-4o",
    tools: list[dict[str, Any]] | None = None,
    max_rounds: int = 10,
    **create_kwargs: Any,
) -> Any:
    """``run_with_memory`` for ``AsyncOpenAI`` and an ``AsyncMemtraceToolbox``."""
    for round_number in range(max_rounds + 1):
        last = round_number == max_rounds
        response = await openai_client.chat.completions.create(
            model=model,
            messages=messages,
            tools=tools or MEMTRACE_TOOLS,
            **({"tool_choice": "none"} if last else {}),
            **create_kwargs,
        )
        choice = response.choices[0]
        messages.append(_as_dict(choice.message))
        if choice.finish_reason != "tool_calls" or not choice.message.tool_calls or last:
            return choice.message
        messages.extend(await toolbox.handle_tool_calls(choice.message.tool_calls))
    raise AssertionError("unreachable")


__all__ = [
    "MEMTRACE_TOOLS",
    "AsyncMemtraceToolbox",
    "MemtraceToolbox",
    "arun_with_memory",
    "run_with_memory",
]
