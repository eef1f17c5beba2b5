"""The Memtrace memory tools as Agents SDK function tools, generated from the catalogue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agents import FunctionTool
from agents.tool_context import ToolContext

from memtrace import AsyncMemtrace, ConflictError, MemtraceError, NotFoundError, ValidationError
from memtrace.toolkit import (
    Binding,
    Tool,
    ToolCallRefused,
    arun_steps,
    failure_text,
    tool_set,
)
from openai_agents_memtrace.errors import crossing_runner


def _function_tool(client: AsyncMemtrace, tool: Tool, binding: Binding) -> FunctionTool:
    """One catalogue tool with a strict schema; optional arguments are nullable."""

    async def invoke(ctx: ToolContext[Any], arguments: str) -> str:
        try:
            return tool.reply(await arun_steps(client, binding.plan(tool, arguments)))
        except (ToolCallRefused, ConflictError, ValidationError, NotFoundError) as error:
            return failure_text(tool, error)  # the model's call was wrong: let it correct it
        except MemtraceError as error:
            raise crossing_runner(error) from error

    on_invoke: Callable[[ToolContext[Any], str], Awaitable[str]] = invoke
    return FunctionTool(
        name=tool.name,
        description=tool.description,
        params_json_schema=binding.json_schema(tool, nullable=True),
        on_invoke_tool=on_invoke,
        strict_json_schema=True,
    )


def create_memtrace_tools(
    client: AsyncMemtrace,
    agent_id: str,
    session_id: str | None = None,
    *,
    include_forget: bool = False,
) -> list[FunctionTool]:
    """``memtrace_remember``, ``memtrace_recall``, ``memtrace_search``, ``memtrace_decide``.

    Bound to ``agent_id`` and, when given, ``session_id``: remember and decide write into
    that session, recall and search read from it. Every tool takes an optional
    ``agent_id`` to work in another agent's memory (shared memory between agents).

    Errors: a duplicate memory, a malformed argument or a missing object is reported to
    the model as text. Authentication, permission, availability and connection errors
    stop the run and reach the caller of ``Runner.run`` as the Memtrace exception itself
    (``except AuthenticationError`` / ``except MemtraceError as e: e.status_code``).

    ``include_forget`` adds a fifth tool, ``memtrace_forget``, that erases one of the bound
    agent's own memories by id.
    """
    binding = Binding(
        agent_id=agent_id, session_id=session_id, agent_override=True, read_session=True
    )
    return [
        _function_tool(client, tool, binding) for tool in tool_set(include_forget=include_forget)
    ]
