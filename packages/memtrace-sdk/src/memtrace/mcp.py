"""``memtrace-mcp``: Memtrace memory tools for any MCP client (Claude Code, Cursor, …).

Its tools come from the tool catalogue (``memtrace.toolkit``). It talks to the Memtrace
server only through ``AsyncMemtrace``, so keys and tenancy are enforced by the server. Configure with ``MEMTRACE_URL`` (default http://localhost:9100)
and ``MEMTRACE_API_KEY``. Install with ``pip install 'memtrace-sdk[mcp]'``.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from memtrace import __version__
from memtrace.async_client import AsyncMemtrace
from memtrace.exceptions import MemtraceError
from memtrace.toolkit import MCP_TOOLS, Binding, Tool, ToolCallRefused, arun_steps

log = logging.getLogger("memtrace.mcp")

INSTRUCTIONS = """Memtrace gives you persistent, time-ordered memory shared across conversations.

- Store what you did, saw or learned with memtrace_remember, and decisions with their
  reasoning with memtrace_decide. Use a stable agent_id for yourself.
- Memories are temporal: always give a time window when recalling. `since` takes a
  relative window such as 30m, 2h, 24h, 7d or 2w, or an ISO 8601 timestamp. Start with
  24h and widen (7d, 4w) when you find nothing.
- memtrace_recall lists your newest memories; memtrace_search finds memories by what they
  are about (query, best match first) and filters by text, tags, memory types and importance.
- For a task with several steps, open a session with memtrace_session_create, pass its
  session_id when you remember or decide, and read it back with memtrace_session_context
  (LLM-ready markdown; max_tokens bounds its size).
- memtrace_forget erases one of your own memories by id when the user asks you to forget.
- Errors name the HTTP status: 401 means the API key is wrong, 409 that an identical memory
  was stored recently (nothing to do), 400 that an argument is malformed."""


def _tool_error(error: MemtraceError | ToolCallRefused) -> ToolError:
    if isinstance(error, ToolCallRefused):
        return ToolError(error.message)
    if error.status_code:
        return ToolError(f"memtrace api error (status {error.status_code}): {error.message}")
    return ToolError(f"memtrace server unreachable: {error.message}")


def _handler(client: AsyncMemtrace, tool: Tool, binding: Binding) -> Callable[..., Any]:
    """An async function whose signature is the tool's arguments, for ``MCPServer``."""

    async def call(**arguments: Any) -> Any:
        try:
            return await arun_steps(client, binding.plan(tool, arguments))
        except (MemtraceError, ToolCallRefused) as error:
            raise _tool_error(error) from error

    parameters = [
        inspect.Parameter(
            argument.name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=argument.annotation(),
            **({} if argument.required else {"default": argument.default}),
        )
        for argument in binding.arguments(tool)
    ]
    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=tool.result
    )
    call.__name__ = tool.name
    return call


def build_server(client: AsyncMemtrace) -> MCPServer[Any]:
    """The MCP server with every tool of the catalogue, bound to ``client``.

    The server serves any agent: ``agent_id`` and ``session_id`` are tool arguments.
    """
    server: MCPServer[Any] = MCPServer(
        "memtrace",
        title="Memtrace — Memory for AI Agents",
        instructions=INSTRUCTIONS,
        version=__version__,
    )
    binding = Binding()
    for tool in MCP_TOOLS:
        server.add_tool(
            _handler(client, tool, binding), name=tool.name, description=tool.description
        )
    return server


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``memtrace-mcp``: stdio by default, or ``--transport http``."""
    parser = argparse.ArgumentParser(prog="memtrace-mcp", description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP transport address.")
    parser.add_argument("--port", type=int, default=8765, help="HTTP transport port.")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    key = os.environ.get("MEMTRACE_API_KEY")
    if not key:
        print(
            "memtrace-mcp: MEMTRACE_API_KEY is required (an mtk_… key from `memtrace key create`)",
            file=sys.stderr,
        )
        sys.exit(2)
    client = AsyncMemtrace(os.environ.get("MEMTRACE_URL") or "http://localhost:9100", key)
    server = build_server(client)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=args.host, port=args.port)
