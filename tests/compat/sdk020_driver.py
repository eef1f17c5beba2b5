"""Runs inside a virtualenv holding only the published memtrace-sdk 0.2.0.

Drives every client method against MEMTRACE_URL with MEMTRACE_API_KEY and prints one
JSON document of what came back, for the test to check.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from memtrace import (
    AddMemoryRequest,
    AsyncMemtrace,
    ContextOptions,
    CreateSessionRequest,
    ListOptions,
    Memtrace,
    RegisterAgentRequest,
    SearchQuery,
)
from memtrace.exceptions import AuthenticationError, ConflictError, MemtraceError, NotFoundError

URL = os.environ["MEMTRACE_URL"]
KEY = os.environ["MEMTRACE_API_KEY"]


def dump(value: Any) -> Any:
    if isinstance(value, list):
        return [dump(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def main() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with Memtrace(URL, KEY) as c:
        out["remember"] = dump(c.remember("agent_1", "User prefers dark mode"))
        try:
            c.remember("agent_1", "User prefers dark mode")
            out["duplicate"] = None
        except ConflictError as exc:
            out["duplicate"] = [type(exc).__name__, exc.message, exc.status_code]
        out["decide"] = dump(c.decide("agent_1", "Use PostgreSQL", "Need ACID"))
        agent = c.register_agent(
            RegisterAgentRequest(name="researcher", description="Finds things")
        )
        out["register_agent"] = dump(agent)
        try:
            c.register_agent(RegisterAgentRequest(name="researcher"))
        except ConflictError as exc:
            out["agent_conflict"] = exc.message
        session = c.create_session(
            CreateSessionRequest(agent_id=agent.id, metadata={"task": "compat"})
        )
        out["create_session"] = dump(session)
        out["add_memory"] = dump(
            c.add_memory(
                AddMemoryRequest(
                    agent_id=agent.id,
                    session_id=session.id,
                    memory_type="episodic",
                    event_type="api_call",
                    content="Called the pricing API and got 3 items",
                    tags=["pricing", "api"],
                    importance=0.8,
                    metadata={"endpoint": "/prices"},
                )
            )
        )
        out["add_memories"] = dump(
            c.add_memories(
                [
                    AddMemoryRequest(
                        agent_id=agent.id,
                        session_id=session.id,
                        memory_type="decision",
                        event_type="decision",
                        content="Skip pagination",
                    ),
                    AddMemoryRequest(
                        agent_id=agent.id,
                        session_id=session.id,
                        memory_type="session",
                        event_type="error",
                        content="Rate limited, backing off",
                    ),
                    AddMemoryRequest(
                        agent_id=agent.id,
                        session_id=session.id,
                        memory_type="decision",
                        event_type="decision",
                        content="Skip pagination",
                    ),
                ]
            )
        )
        out["recall"] = dump(c.recall("agent_1"))
        out["list_memories"] = dump(
            c.list_memories(ListOptions(agent_id=agent.id, tags="pricing", limit=10, order="asc"))
        )
        out["list_paged"] = dump(c.list_memories(ListOptions(agent_id=agent.id, limit=2)))
        out["search_memories"] = dump(
            c.search_memories(
                SearchQuery(
                    agent_id=agent.id,
                    content_contains="pricing",
                    memory_types=["episodic"],
                    min_importance=0.5,
                    since="1h",
                )
            )
        )
        out["list_agents"] = dump(c.list_agents())
        out["get_agent"] = dump(c.get_agent(agent.id))
        out["get_agent_by_name"] = dump(c.get_agent("researcher"))
        out["get_agent_stats"] = dump(c.get_agent_stats(agent.id))
        out["get_agent_memories"] = dump(c.get_agent_memories(agent.id, ListOptions(limit=50)))
        out["get_session"] = dump(c.get_session(session.id))
        out["get_session_context"] = dump(c.get_session_context(session.id))
        out["get_session_context_opts"] = dump(
            c.get_session_context(
                session.id, ContextOptions(since="1h", include_types=["decision"], max_tokens=1000)
            )
        )
        out["get_session_memories"] = dump(
            c.get_session_memories(session.id, ListOptions(order="asc"))
        )
        out["list_sessions"] = dump(c.list_sessions())
        out["list_sessions_agent"] = dump(c.list_sessions(agent.id))
        out["close_session"] = dump(c.close_session(session.id))
        try:
            c.get_session("sess_doesnotexist")
        except NotFoundError as exc:
            out["not_found"] = [type(exc).__name__, exc.message, exc.status_code]
        spare = c.register_agent(RegisterAgentRequest(name="spare"))
        out["delete_agent"] = c.delete_agent(spare.id)
        try:
            c.get_agent(spare.id)
        except NotFoundError:
            out["deleted_agent_gone"] = True
        try:
            c.list_memories(ListOptions(since="2x"))
        except MemtraceError as exc:
            out["bad_filter"] = [type(exc).__name__, exc.status_code]
    with Memtrace(URL, "mtk_" + "A" * 43 + "=") as bad:
        try:
            bad.list_agents()
        except AuthenticationError as exc:
            out["bad_key"] = [type(exc).__name__, exc.message, exc.status_code]

    async def async_part() -> dict[str, Any]:
        async with AsyncMemtrace(URL, KEY) as ac:
            mem = await ac.remember("agent_async", "async hello")
            listed = await ac.recall("agent_async")
            return {"remember": dump(mem), "recall": dump(listed)}

    out["async"] = asyncio.run(async_part())
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
