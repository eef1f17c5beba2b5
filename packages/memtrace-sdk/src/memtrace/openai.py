"""Memtrace memory tools for the OpenAI Chat Completions API.

``MEMTRACE_TOOLS`` are the four tool definitions to pass as ``tools=``; a
``MemtraceToolbox`` answers the model's tool calls. Both come from the tool catalogue
(``memtrace.toolkit``); this module only binds the agent and session and words errors.
Nothing here imports ``openai``: tool calls may be the ``openai`` objects or plain dicts
of the same shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from memtrace.async_client import AsyncMemtrace
from memtrace.client import Memtrace
from memtrace.exceptions import MemtraceError
from memtrace.toolkit import (
    CORE_TOOLS,
    Binding,
    Steps,
    Tool,
    ToolCallRefused,
    arun_steps,
    failure_text,
    run_steps,
    to_json,
    tool_set,
)


def chat_tool_definition(tool: Tool, binding: Binding) -> dict[str, Any]:
    """A catalogue tool as a Chat Completions ``tools=`` entry."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": binding.json_schema(tool),
        },
    }


# The definitions depend only on the agent being bound (no agent_id argument), not on which.
_DEFINITIONS_BINDING = Binding(agent_id="bound")

MEMTRACE_TOOLS: list[dict[str, Any]] = [
    chat_tool_definition(tool, _DEFINITIONS_BINDING) for tool in CORE_TOOLS
]
"""The four tool definitions (remember, recall, search, decide) to pass as ``tools=``."""


@dataclass(frozen=True)
class _Plan:
    """One tool call: the tool and its steps, or a ready reply."""

    tool_call_id: str
    tool: Tool | None = None
    steps: Steps | None = None
    reply: str | None = None

    def message(self, content: str) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": self.tool_call_id, "content": content}

    def answer(self, result: Any) -> dict[str, Any]:
        assert self.tool is not None
        return self.message(self.tool.reply(result))

    def failed(self, error: MemtraceError | ToolCallRefused) -> dict[str, Any]:
        return self.message(failure_text(self.tool, error))


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


ClientT = TypeVar("ClientT", Memtrace, AsyncMemtrace)


class _ToolboxBase(Generic[ClientT]):
    def __init__(
        self,
        client: ClientT,
        agent_id: str,
        session_id: str | None = None,
        *,
        include_forget: bool = False,
    ) -> None:
        self.client: ClientT = client
        self.agent_id = agent_id
        self.session_id = session_id
        self.binding = Binding(agent_id=agent_id, session_id=session_id)
        self._tools = {tool.name: tool for tool in tool_set(include_forget=include_forget)}
        self.tools: list[dict[str, Any]] = [
            chat_tool_definition(tool, self.binding) for tool in self._tools.values()
        ]

    def _plan(self, tool_call: Any) -> _Plan:
        call_id = str(_field(tool_call, "id") or "")
        function = _field(tool_call, "function")
        kind = _field(tool_call, "type") or "function"
        if kind != "function" or function is None:
            return _Plan(call_id, reply=to_json({"error": f"unsupported tool call type '{kind}'"}))
        name = _field(function, "name")
        tool = self._tools.get(name)
        if tool is None:
            return _Plan(call_id, reply=to_json({"error": f"unknown tool '{name}'"}))
        try:
            steps = self.binding.plan(tool, _field(function, "arguments") or "{}")
        except ToolCallRefused as error:
            return _Plan(call_id, tool, reply=failure_text(tool, error))
        return _Plan(call_id, tool, steps)


class MemtraceToolbox(_ToolboxBase[Memtrace]):
    """Answers Chat Completions tool calls with a sync ``Memtrace`` client.

    Memories are written for ``agent_id`` (and into ``session_id`` when given); recall
    and search read all of the agent's memories. ``tools`` holds the definitions to pass
    as ``tools=`` (``MEMTRACE_TOOLS``, plus ``memtrace_forget`` with ``include_forget``).
    Every tool call gets exactly one ``{"role": "tool", ...}`` message back; failures
    (bad JSON, unknown tools, server errors) become an error text for the model, never an
    exception.
    """

    def handle_tool_calls(self, tool_calls: Iterable[Any] | None) -> list[dict[str, Any]]:
        """One tool message for each tool call, in order."""
        return [self._run(self._plan(tc)) for tc in tool_calls or ()]

    def _run(self, plan: _Plan) -> dict[str, Any]:
        if plan.steps is None:
            return plan.message(plan.reply or "")
        try:
            return plan.answer(run_steps(self.client, plan.steps))
        except (MemtraceError, ToolCallRefused) as error:
            return plan.failed(error)


class AsyncMemtraceToolbox(_ToolboxBase[AsyncMemtrace]):
    """``MemtraceToolbox`` for an ``AsyncMemtrace`` client."""

    async def handle_tool_calls(self, tool_calls: Iterable[Any] | None) -> list[dict[str, Any]]:
        """One tool message for each tool call, in order."""
        return [await self._run(self._plan(tc)) for tc in tool_calls or ()]

    async def _run(self, plan: _Plan) -> dict[str, Any]:
        if plan.steps is None:
            return plan.message(plan.reply or "")
        try:
            return plan.answer(await arun_steps(self.client, plan.steps))
        except (MemtraceError, ToolCallRefused) as error:
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
            tools=tools or toolbox.tools,
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
            tools=tools or toolbox.tools,
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
