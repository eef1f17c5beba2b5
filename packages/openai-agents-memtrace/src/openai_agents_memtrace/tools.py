"""The four Memtrace memory tools as Agents SDK function tools."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from agents import FunctionTool, function_tool

from memtrace import AsyncMemtrace, ConflictError, MemtraceError, NotFoundError, ValidationError
from memtrace.toolkit import (
    DUPLICATE_TEXT,
    error_text,
    list_text,
    logged_text,
    stored_text,
    to_json,
)
from openai_agents_memtrace.errors import crossing_runner

T = TypeVar("T")
MemoryType = Literal["episodic", "session", "decision", "entity"]


async def _answer(action: Awaitable[T], render: Callable[[T], str]) -> str:
    """The tool's text; Memtrace errors the model cannot fix stop the run."""
    try:
        return render(await action)
    except ConflictError:
        return DUPLICATE_TEXT
    except (ValidationError, NotFoundError) as error:
        return error_text(error)  # the model's arguments were wrong: let it correct them
    except MemtraceError as error:
        raise crossing_runner(error) from error


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
    bound_agent, bound_session = agent_id, session_id

    @function_tool(failure_error_function=None)
    async def memtrace_remember(
        content: str,
        tags: list[str] | None = None,
        importance: float | None = None,
        memory_type: MemoryType | None = None,
        event_type: str | None = None,
        agent_id: str | None = None,
    ) -> str:
        """Store a memory: an action taken, something observed, an event or a fact.

        Args:
            content: What to remember, self-contained.
            tags: Short labels to find it again (letters, digits, _ . -).
            importance: How much it matters, from 0 to 1.
            memory_type: episodic (default), decision, entity (a fact about someone or something) or session.
            event_type: Kind of event, such as observation or error (default general).
            agent_id: Another agent's id, to write into its memory instead of yours.
        """
        return await _answer(
            client.remember(
                agent_id or bound_agent,
                content,
                session_id=bound_session,
                tags=tags,
                importance=importance,
                memory_type=memory_type,
                event_type=event_type,
            ),
            stored_text,
        )

    @function_tool(failure_error_function=None)
    async def memtrace_recall(
        since: str | None = None,
        limit: int | None = None,
        memory_type: MemoryType | None = None,
        agent_id: str | None = None,
    ) -> str:
        """Recall recent memories, newest first.

        Args:
            since: Time window such as 30m, 2h, 24h (default) or 7d, or an ISO 8601 timestamp.
            limit: At most this many memories (default 50, at most 200).
            memory_type: Only memories of this type.
            agent_id: Another agent's id, to read its memory instead of yours.
        """
        return await _answer(
            client.list_memories(
                agent_id=agent_id or bound_agent,
                since=since or "24h",
                session_id=bound_session,
                memory_type=memory_type,
                limit=min(limit or 50, 200),
                order="desc",
            ),
            list_text,
        )

    @function_tool(failure_error_function=None)
    async def memtrace_search(
        query: str | None = None,
        content_contains: str | None = None,
        memory_types: list[MemoryType] | None = None,
        tags: list[str] | None = None,
        min_importance: float | None = None,
        since: str | None = None,
        limit: int | None = None,
        agent_id: str | None = None,
    ) -> str:
        """Search memories: by what they are about (query), text, types, tags, importance, time.

        Args:
            query: What you are looking for, in words; results come best match first.
            content_contains: Text the memory contains (case-sensitive).
            memory_types: Any of these memory types.
            tags: Tags the memory must all carry.
            min_importance: Minimum importance, from 0 to 1.
            since: Time window such as 2h or 7d, or an ISO 8601 timestamp.
            limit: At most this many (default 50, at most 200).
            agent_id: Another agent's id, to search its memory instead of yours.
        """
        return await _answer(
            client.search_memories(
                {
                    "query": query,
                    "agent_id": agent_id or bound_agent,
                    "session_id": bound_session,
                    "content_contains": content_contains,
                    "memory_types": memory_types,
                    "tags": tags,
                    "min_importance": min_importance,
                    "since": since,
                    "limit": min(limit or 50, 200),
                    "order": "desc",
                }
            ),
            list_text,
        )

    @function_tool(failure_error_function=None)
    async def memtrace_decide(decision: str, reasoning: str, agent_id: str | None = None) -> str:
        """Log a decision with its reasoning, for the audit trail.

        Args:
            decision: What was decided.
            reasoning: Why: the evidence and trade-offs.
            agent_id: Another agent's id, to log the decision in its memory instead of yours.
        """
        return await _answer(
            client.decide(agent_id or bound_agent, decision, reasoning, session_id=bound_session),
            logged_text,
        )

    @function_tool(failure_error_function=None)
    async def memtrace_forget(memory_id: str) -> str:
        """Erase one of your own memories by id, permanently, when asked to forget something.

        Args:
            memory_id: The id (mem_...) of the memory, as recall or search showed it.
        """

        async def forget() -> str:
            memory = await client.get_memory(memory_id)
            if memory.agent_id != bound_agent:
                return to_json({"error": "that memory belongs to another agent", "status": 403})
            await client.delete_memory(memory_id)
            return to_json({"forgotten": True, "id": memory_id})

        return await _answer(forget(), str)

    tools = [memtrace_remember, memtrace_recall, memtrace_search, memtrace_decide]
    return [*tools, memtrace_forget] if include_forget else tools
