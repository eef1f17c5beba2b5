"""``MemtraceStore``: LangGraph's ``BaseStore`` on Memtrace keyed memories."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from langgraph.store.base import BaseStore, Op, Result, TTLConfig

from langgraph_memtrace.plans import Scope, plan
from memtrace import AsyncMemtrace, Memtrace
from memtrace.toolkit import arun_steps, run_steps


class MemtraceStore(BaseStore):
    """A LangGraph long-term memory store whose items are memories of one Memtrace agent.

    ``MemtraceStore(base_url, api_key, agent_id="langgraph")`` (both default to
    ``MEMTRACE_URL`` / ``MEMTRACE_API_KEY``) builds a sync and an async SDK client; nothing
    connects until the first op. Or pass clients of your own: ``client=`` (used by
    ``batch`` and the sync methods) and ``async_client=`` (``abatch`` and the ``a…``
    methods); a store given only one of them answers only that side.

    Each item is a keyed memory: ``put`` writes a new version (the old ones stay as
    history), ``delete`` erases every version, ``get`` and ``search`` read current
    versions. ``search_mode="hybrid"`` ranks queries by words and meaning when the server
    has semantic search. ``ttl=TTLConfig(default_ttl=…)`` gives puts without a ``ttl`` an
    expiry; an expiry counts from the put (reads do not refresh it), and the server hides
    an expired item at once.
    """

    supports_ttl = True

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        agent_id: str = "langgraph",
        client: Memtrace | None = None,
        async_client: AsyncMemtrace | None = None,
        search_mode: Literal["bm25", "hybrid"] | None = None,
        ttl: TTLConfig | None = None,
        **client_options: Any,
    ) -> None:
        if client is None and async_client is None:
            client = Memtrace(base_url, api_key, **client_options)
            async_client = AsyncMemtrace(base_url, api_key, **client_options)
            self._owns_clients = True
        else:
            self._owns_clients = False
        self._client = client
        self._async_client = async_client
        self._scope = Scope(agent_id=agent_id, search_mode=search_mode)
        self.ttl_config = ttl

    @property
    def agent_id(self) -> str:
        """The agent whose memories are this store's items."""
        return self._scope.agent_id

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the ops in order with the sync client; one result per op."""
        if self._client is None:
            raise RuntimeError("this MemtraceStore has no sync client: pass client=")
        client = self._client
        return [run_steps(client, plan(op, self._scope)) for op in ops]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the ops in order with the async client; one result per op."""
        if self._async_client is None:
            raise RuntimeError("this MemtraceStore has no async client: pass async_client=")
        return [await arun_steps(self._async_client, plan(op, self._scope)) for op in ops]

    def close(self) -> None:
        """Close the sync client, if the store created it."""
        if self._owns_clients and self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        """Close both clients, if the store created them."""
        self.close()
        if self._owns_clients and self._async_client is not None:
            await self._async_client.close()

    def __enter__(self) -> MemtraceStore:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    async def __aenter__(self) -> MemtraceStore:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.aclose()
