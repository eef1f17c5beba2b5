"""``MemtraceSession``: an Agents SDK session whose conversation lives in Memtrace."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from agents import SessionABC
from agents.items import TResponseInputItem
from agents.memory import SessionSettings

from memtrace import AsyncMemtrace, MemtraceError

log = logging.getLogger("openai_agents_memtrace")

CONTEXT_PREFIX = "Prior memory of this agent, from Memtrace (earlier sessions):\n\n"
_PAGE = 1000


def item_text(item: Any) -> str:
    """The text of a message item whose content is a string or a list of text parts."""
    content = item.get("content") if isinstance(item, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        ]
        return "\n".join(p for p in parts if p)
    return ""


def _plain(item: Any) -> Any:
    """A JSON-safe copy of an item, as it will come back from the server."""
    return json.loads(json.dumps(item, default=str))


class MemtraceSession(SessionABC):
    """Conversation history for ``Runner.run`` that persists into a Memtrace session.

    User messages (and assistant messages, when enabled) are stored as memories of type
    ``session`` with event type ``user_message`` / ``assistant_message``; each carries the
    original item and its position, so ``create(..., session_id=...)`` rebuilds the
    history after a restart. Repeated identical messages are all kept (each has its own
    dedup key). Tool calls and their outputs stay in this process only.

    With ``inject_context``, the first item is the agent's memory from its earlier
    sessions (``POST /agents/{id}/context``), bounded by ``context_max_tokens``.
    """

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        client: AsyncMemtrace,
        agent_id: str,
        memtrace_session_id: str,
        *,
        persist_user_messages: bool = True,
        persist_assistant_messages: bool = False,
        context_item: TResponseInputItem | None = None,
        history: list[TResponseInputItem] | None = None,
        next_position: int = 0,
    ) -> None:
        self.client = client
        self.agent_id = agent_id
        self.session_id = memtrace_session_id
        self.persist_user_messages = persist_user_messages
        self.persist_assistant_messages = persist_assistant_messages
        self._context_item = context_item
        self._items: list[TResponseInputItem] = list(history or [])
        self._next_position = next_position
        self._lock = asyncio.Lock()

    @classmethod
    async def create(
        cls,
        client: AsyncMemtrace,
        agent_id: str,
        metadata: dict[str, Any] | None = None,
        inject_context: bool = True,
        context_since: str = "24h",
        context_max_tokens: int | None = 4000,
        persist_user_messages: bool = True,
        persist_assistant_messages: bool = False,
        session_id: str | None = None,
        context_query: str | None = None,
    ) -> MemtraceSession:
        """Open a new Memtrace session for ``agent_id``, or resume ``session_id``.

        ``agent_id`` may be an agent's id or name, or a new id (registered on the fly).
        Resuming reloads the persisted conversation from the server. ``context_query`` (for
        example the first user message) makes the prior context the memories most relevant
        to it rather than the most recent ones.
        """
        history: list[TResponseInputItem] = []
        position = 0
        if session_id:
            session = await client.get_session(session_id)
            history, position = await _load_history(client, session.id)
        else:
            session = await client.create_session({"agent_id": agent_id, "metadata": metadata})
        context_item: TResponseInputItem | None = None
        if inject_context:
            ctx = await client.get_agent_context(
                agent_id,
                {"since": context_since, "max_tokens": context_max_tokens, "query": context_query},
            )
            if ctx.memory_count:
                context_item = {"role": "system", "content": CONTEXT_PREFIX + ctx.context}
        return cls(
            client,
            agent_id,
            session.id,
            persist_user_messages=persist_user_messages,
            persist_assistant_messages=persist_assistant_messages,
            context_item=context_item,
            history=history,
            next_position=position,
        )

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The prior-memory item (if any), then the latest ``limit`` items, oldest first."""
        async with self._lock:
            items = self._items[-limit:] if limit else self._items
            head = [self._context_item] if self._context_item is not None else []
            return [*head, *items]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append items, then persist the messages this session is set to keep."""
        if not items:
            return
        async with self._lock:
            self._items.extend(items)
            start = self._next_position
            self._next_position += len(items)
        for offset, item in enumerate(items):
            await self._persist(item, start + offset)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the latest item (here only; persisted memories stay)."""
        async with self._lock:
            return self._items.pop() if self._items else None

    async def clear_session(self) -> None:
        """Forget the history and the injected context here (persisted memories stay)."""
        async with self._lock:
            self._items.clear()
            self._context_item = None

    async def close(self) -> None:
        """Mark the Memtrace session closed. The client stays open."""
        await self.client.close_session(self.session_id)

    async def _persist(self, item: TResponseInputItem, position: int) -> None:
        if not isinstance(item, dict) or item.get("type", "message") != "message":
            return
        role = item.get("role")
        if role == "user" and self.persist_user_messages:
            event = "user_message"
        elif role == "assistant" and self.persist_assistant_messages:
            event = "assistant_message"
        else:
            return
        text = item_text(item)
        if not text.strip():
            return
        try:
            await self.client.add_memory(
                {
                    "agent_id": self.agent_id,
                    "session_id": self.session_id,
                    "memory_type": "session",
                    "event_type": event,
                    "content": text,
                    "dedup_key": f"{self.session_id}:{position}",
                    "metadata": {"item": _plain(item), "position": position},
                }
            )
        except MemtraceError as error:
            log.warning(
                "could not persist a %s of session %s (status %s): %s",
                event,
                self.session_id,
                error.status_code,
                error.message,
            )


async def _load_history(
    client: AsyncMemtrace, session_id: str
) -> tuple[list[TResponseInputItem], int]:
    found: list[tuple[int, TResponseInputItem]] = []
    offset = 0
    while True:
        page = await client.get_session_memories(
            session_id, {"memory_type": "session", "order": "asc", "limit": _PAGE, "offset": offset}
        )
        for memory in page.memories:
            meta = memory.metadata or {}
            if isinstance(meta.get("position"), int) and isinstance(meta.get("item"), dict):
                found.append((meta["position"], meta["item"]))
        if not page.has_more:
            break
        offset += _PAGE
    found.sort(key=lambda pair: pair[0])
    next_position = found[-1][0] + 1 if found else 0
    return [item for _, item in found], next_position
