"""``memtrace-mcp``: Memtrace memory tools for any MCP client (Claude Code, Cursor, …).

It talks to the Memtrace server only through ``AsyncMemtrace``, so keys and tenancy are
enforced by the server. Configure with ``MEMTRACE_URL`` (default http://localhost:9100)
and ``MEMTRACE_API_KEY``. Install with ``pip install 'memtrace-sdk[mcp]'``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Awaitable, Sequence
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from memtrace import __version__
from memtrace.async_client import AsyncMemtrace
from memtrace.exceptions import MemtraceError
from memtrace.models import Agent, Memory, MemoryList, SearchResult, Session

T = TypeVar("T")
log = logging.getLogger("memtrace.mcp")

INSTRUCTIONS = """Memtrace gives you persistent, time-ordered memory shared across conversations.

- Store what you did, saw or learned with memtrace_remember, and decisions with their
  reasoning with memtrace_decide. Use a stable agent_id for yourself.
- Memories are temporal: always give a time window when recalling. `since` takes a
  relative window such as 30m, 2h, 24h, 7d or 2w, or an ISO 8601 timestamp. Start with
  24h and widen (7d, 4w) when you find nothing.
- memtrace_recall lists your newest memories; memtrace_search filters by text, tags,
  memory types and importance.
- For a task with several steps, open a session with memtrace_session_create, pass its
  session_id when you remember or decide, and read it back with memtrace_session_context
  (LLM-ready markdown; max_tokens bounds its size).
- memtrace_forget erases one of your own memories by id when the user asks you to forget.
- Errors name the HTTP status: 401 means the API key is wrong, 409 that an identical memory
  was stored recently (nothing to do), 400 that an argument is malformed."""

MemoryTypeArg = Literal["episodic", "session", "decision", "entity"]
AgentArg = Annotated[
    str, Field(description="Your agent id, e.g. 'claude_code' (letters, digits, _ -).")
]
SinceArg = Annotated[
    str | None,
    Field(description="Time window: 30m, 2h, 24h, 7d, 2w, or an ISO 8601 timestamp."),
]


async def _api(action: Awaitable[T]) -> T:
    try:
        return await action
    except MemtraceError as error:
        if error.status_code:
            raise ToolError(
                f"memtrace api error (status {error.status_code}): {error.message}"
            ) from error
        raise ToolError(f"memtrace server unreachable: {error.message}") from error


def build_server(client: AsyncMemtrace) -> MCPServer[Any]:
    """The MCP server with the seven Memtrace tools, bound to ``client``."""
    server: MCPServer[Any] = MCPServer(
        "memtrace",
        title="Memtrace — Memory for AI Agents",
        instructions=INSTRUCTIONS,
        version=__version__,
    )

    @server.tool()
    async def memtrace_remember(
        agent_id: AgentArg,
        content: Annotated[
            str, Field(description="What to remember, in one self-contained sentence or more.")
        ],
        memory_type: Annotated[
            MemoryTypeArg,
            Field(
                description="episodic (actions, observations; default), decision, entity (facts about people or things), session."
            ),
        ] = "episodic",
        event_type: Annotated[
            str, Field(description="Kind of event, e.g. general, observation, error.")
        ] = "general",
        session_id: Annotated[
            str | None, Field(description="Session this belongs to, if any.")
        ] = None,
        tags: Annotated[
            list[str] | None, Field(description="Labels to find it again (letters, digits, _ . -).")
        ] = None,
        importance: Annotated[float | None, Field(ge=0, le=1, description="0 to 1.")] = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="Any extra JSON fields.")
        ] = None,
    ) -> Memory:
        """Store a memory: an action taken, something observed, a fact learned."""
        return await _api(
            client.remember(
                agent_id,
                content,
                memory_type=memory_type,
                event_type=event_type,
                session_id=session_id,
                tags=tags,
                importance=importance,
                metadata=metadata,
            )
        )

    @server.tool()
    async def memtrace_recall(
        agent_id: AgentArg,
        since: SinceArg = "24h",
        session_id: Annotated[
            str | None, Field(description="Only memories of this session.")
        ] = None,
        memory_type: Annotated[
            MemoryTypeArg | None, Field(description="Only this memory type.")
        ] = None,
        limit: Annotated[
            int, Field(ge=1, le=1000, description="At most this many (default 50).")
        ] = 50,
    ) -> MemoryList:
        """Recall an agent's recent memories, newest first, within a time window."""
        return await _api(
            client.list_memories(
                agent_id=agent_id,
                since=since or "24h",
                session_id=session_id,
                memory_type=memory_type,
                limit=limit,
                order="desc",
            )
        )

    @server.tool()
    async def memtrace_search(
        query: Annotated[
            str | None, Field(description="What you are looking for, in words: best match first.")
        ] = None,
        agent_id: Annotated[str | None, Field(description="Only this agent's memories.")] = None,
        content_contains: Annotated[
            str | None, Field(description="Text the memory contains (case-sensitive).")
        ] = None,
        memory_types: Annotated[
            list[MemoryTypeArg] | None, Field(description="Any of these memory types.")
        ] = None,
        tags: Annotated[list[str] | None, Field(description="All of these tags.")] = None,
        since: SinceArg = None,
        min_importance: Annotated[
            float | None, Field(ge=0, le=1, description="Minimum importance.")
        ] = None,
        session_id: Annotated[
            str | None, Field(description="Only memories of this session.")
        ] = None,
        limit: Annotated[
            int, Field(ge=1, le=1000, description="At most this many (default 50).")
        ] = 50,
    ) -> SearchResult:
        """Search memories by what they are about (query, best match first), text, types, tags,
        importance and time window."""
        return await _api(
            client.search_memories(
                {
                    "query": query,
                    "agent_id": agent_id,
                    "content_contains": content_contains,
                    "memory_types": memory_types,
                    "tags": tags,
                    "since": since,
                    "min_importance": min_importance,
                    "session_id": session_id,
                    "limit": limit,
                    "order": "desc",
                }
            )
        )

    @server.tool()
    async def memtrace_decide(
        agent_id: AgentArg,
        decision: Annotated[str, Field(description="What was decided.")],
        reasoning: Annotated[str, Field(description="Why: the evidence and trade-offs.")],
        session_id: Annotated[
            str | None, Field(description="Session this decision belongs to, if any.")
        ] = None,
    ) -> Memory:
        """Log a decision with its reasoning, for the audit trail."""
        return await _api(client.decide(agent_id, decision, reasoning, session_id=session_id))

    @server.tool()
    async def memtrace_session_create(
        agent_id: Annotated[str, Field(description="Agent id or name that owns the session.")],
        metadata: Annotated[
            dict[str, Any] | None, Field(description="Any JSON describing the task.")
        ] = None,
    ) -> Session:
        """Open a session to group the memories of one task; returns its id."""
        return await _api(client.create_session({"agent_id": agent_id, "metadata": metadata}))

    @server.tool()
    async def memtrace_session_context(
        session_id: Annotated[str, Field(description="The session's id (sess_…).")],
        since: SinceArg = None,
        include_types: Annotated[
            list[MemoryTypeArg] | None, Field(description="Only these memory types.")
        ] = None,
        max_tokens: Annotated[
            int | None, Field(ge=1, description="Token budget; oldest lines are dropped first.")
        ] = None,
        query: Annotated[
            str | None, Field(description="Keep the memories most relevant to this text.")
        ] = None,
    ) -> str:
        """A session's recent memories as markdown, ready to read (default window 24h)."""
        ctx = await _api(
            client.get_session_context(
                session_id,
                {
                    "since": since,
                    "include_types": include_types,
                    "max_tokens": max_tokens,
                    "query": query,
                },
            )
        )
        return ctx.context

    @server.tool()
    async def memtrace_agent_register(
        name: Annotated[str, Field(description="Unique agent name in your organisation.")],
        description: Annotated[str | None, Field(description="What the agent does.")] = None,
    ) -> Agent:
        """Register an agent by name; returns it with its generated id."""
        return await _api(client.register_agent({"name": name, "description": description}))

    @server.tool()
    async def memtrace_forget(
        agent_id: AgentArg,
        memory_id: Annotated[str, Field(description="The id (mem_…) of a memory of this agent.")],
    ) -> str:
        """Erase one of the agent's own memories by id, permanently (e.g. when told to forget)."""
        memory = await _api(client.get_memory(memory_id))
        if memory.agent_id != agent_id:
            raise ToolError(
                f"memory {memory_id} belongs to another agent; only your own can be forgotten"
            )
        await _api(client.delete_memory(memory.id or memory_id))
        return f"forgot {memory_id}"

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
