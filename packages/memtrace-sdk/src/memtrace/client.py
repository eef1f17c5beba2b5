"""The synchronous client."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Concatenate, ParamSpec, TypeVar

import httpx

from memtrace import _operations as ops
from memtrace._base import Call, ClientBase, Outcome, Sleep

P = ParamSpec("P")
T = TypeVar("T")


def _sync(op: Callable[P, Call[T]]) -> Callable[Concatenate[Memtrace, P], T]:
    @functools.wraps(op)
    def method(self: Memtrace, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._execute(op(*args, **kwargs))

    return method


class Memtrace(ClientBase):
    """Synchronous client for the Memtrace API.

    ``Memtrace(base_url, api_key)``; both default to ``MEMTRACE_URL`` /
    ``MEMTRACE_API_KEY``. Pass ``http_client`` (an ``httpx.Client``) or ``transport`` to
    control the connection. Nothing connects until the first call.
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
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
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
        self._client = http_client or httpx.Client(
            base_url=self.base_url, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the HTTP connection pool (if this client created it)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Memtrace:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def _execute(self, call: Call[T]) -> T:
        steps = self._exchange(call)
        outcome: Outcome = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                outcome = None
                continue
            try:
                outcome = self._client.request(
                    step.method, step.url, headers=self.headers, **step.kwargs
                )
            except httpx.TransportError as error:
                outcome = error

    remember = _sync(ops.remember)
    recall = _sync(ops.recall)
    decide = _sync(ops.decide)
    add_memory = _sync(ops.add_memory)
    add_memories = _sync(ops.add_memories)
    get_memory = _sync(ops.get_memory)
    memory_versions = _sync(ops.memory_versions)
    list_memories = _sync(ops.list_memories)
    search_memories = _sync(ops.search_memories)
    register_agent = _sync(ops.register_agent)
    list_agents = _sync(ops.list_agents)
    get_agent = _sync(ops.get_agent)
    get_agent_stats = _sync(ops.get_agent_stats)
    get_agent_memories = _sync(ops.get_agent_memories)
    get_agent_context = _sync(ops.get_agent_context)
    delete_agent = _sync(ops.delete_agent)
    update_agent = _sync(ops.update_agent)
    delete_memory = _sync(ops.delete_memory)
    erase_memories = _sync(ops.erase_memories)
    delete_session = _sync(ops.delete_session)
    create_session = _sync(ops.create_session)
    get_session = _sync(ops.get_session)
    list_sessions = _sync(ops.list_sessions)
    update_session = _sync(ops.update_session)
    close_session = _sync(ops.close_session)
    get_session_context = _sync(ops.get_session_context)
    get_session_memories = _sync(ops.get_session_memories)


__all__ = ["Memtrace"]
