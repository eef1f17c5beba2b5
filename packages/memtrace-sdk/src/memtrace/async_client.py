"""The asynchronous client: the same operations as ``Memtrace``, awaited."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from memtrace import _operations as ops
from memtrace._base import Call, ClientBase, Outcome, Sleep

P = ParamSpec("P")
T = TypeVar("T")


def _async(
    op: Callable[P, Call[T]],
) -> Callable[Concatenate[AsyncMemtrace, P], Coroutine[Any, Any, T]]:
    @functools.wraps(op)
    async def method(self: AsyncMemtrace, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._execute(op(*args, **kwargs))

    return method


class AsyncMemtrace(ClientBase):
    """Asynchronous client for the Memtrace API.

    ``AsyncMemtrace(base_url, api_key)``; both default to ``MEMTRACE_URL`` /
    ``MEMTRACE_API_KEY``. Pass ``http_client`` (an ``httpx.AsyncClient``) or
    ``transport`` to control the connection. Nothing connects until the first call.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 2,
        retry_backoff: float = 0.25,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            timeout=timeout,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            headers=headers,
        )
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport
        )

    async def close(self) -> None:
        """Close the HTTP connection pool (if this client created it)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncMemtrace:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()

    async def _execute(self, call: Call[T]) -> T:
        steps = self._exchange(call)
        outcome: Outcome = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                outcome = None
                continue
            try:
                outcome = await self._client.request(
                    step.method, step.url, headers=self.headers, **step.kwargs
                )
            except httpx.TransportError as error:
                outcome = error

    remember = _async(ops.remember)
    recall = _async(ops.recall)
    decide = _async(ops.decide)
    add_memory = _async(ops.add_memory)
    add_memories = _async(ops.add_memories)
    get_memory = _async(ops.get_memory)
    memory_versions = _async(ops.memory_versions)
    list_memories = _async(ops.list_memories)
    search_memories = _async(ops.search_memories)
    register_agent = _async(ops.register_agent)
    list_agents = _async(ops.list_agents)
    get_agent = _async(ops.get_agent)
    get_agent_stats = _async(ops.get_agent_stats)
    get_agent_memories = _async(ops.get_agent_memories)
    get_agent_context = _async(ops.get_agent_context)
    delete_agent = _async(ops.delete_agent)
    update_agent = _async(ops.update_agent)
    delete_memory = _async(ops.delete_memory)
    erase_memories = _async(ops.erase_memories)
    delete_session = _async(ops.delete_session)
    create_session = _async(ops.create_session)
    get_session = _async(ops.get_session)
    list_sessions = _async(ops.list_sessions)
    update_session = _async(ops.update_session)
    close_session = _async(ops.close_session)
    get_session_context = _async(ops.get_session_context)
    get_session_memories = _async(ops.get_session_memories)
