"""Per-organisation store routing: an org may keep its agents, sessions and memories in
a store of its own, while orgs, keys and bindings stay in the default store.

Bindings are re-read from the default store at most once a second, so a binding set or
removed by ``memtrace org set-store`` (any process) takes effect without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from memtrace_server.core.records import (
    AgentRecord,
    AgentStatsRecord,
    ApiKeyRecord,
    MemoryFilter,
    MemoryRecord,
    OrgRecord,
    OrgStoreBinding,
    SessionRecord,
)
from memtrace_server.storage.base import DuplicateName, Store, StoreError
from memtrace_server.storage.secrets import SecretError, unseal

log = logging.getLogger("memtrace.storage")
REFRESH_SECONDS = 1.0


class RoutedStore:
    """A ``Store`` that sends each org's tenant data to the store it is bound to."""

    def __init__(
        self,
        default: Store,
        *,
        master_key: bytes | None,
        opener: Callable[[str], Store],
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self.default = default
        self.master_key = master_key
        self.opener = opener
        self.refresh_seconds = refresh_seconds
        self._bindings: dict[str, OrgStoreBinding] = {}
        self._loaded_at = float("-inf")
        self._stores: dict[str, Store] = {}
        self._ready: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Open the default store and check that every binding can be opened."""
        await self.default.open()
        bindings = await self.default.list_org_stores()
        if bindings:
            if self.master_key is None:
                await self.default.close()
                raise StoreError(
                    f"{len(bindings)} org(s) are bound to their own store, but MEMTRACE_MASTER_KEY "
                    "is not set; generate one with `memtrace keygen master`"
                )
            for binding in bindings:
                try:
                    unseal(self.master_key, binding.org_id, binding.url_cipher, binding.url_nonce)
                except SecretError as exc:
                    log.error("%s; its requests will fail with 503", exc)

    async def close(self) -> None:
        """Close every store this router opened, then the default one."""
        for store in self._stores.values():
            await store.close()
        self._stores.clear()
        self._ready.clear()
        await self.default.close()

    async def ping(self) -> None:
        """Ping the default store."""
        await self.default.ping()

    async def _tenant(self, org_id: str) -> Store:
        now = time.monotonic()
        if now - self._loaded_at > self.refresh_seconds:
            async with self._lock:
                if now - self._loaded_at > self.refresh_seconds:
                    self._bindings = {b.org_id: b for b in await self.default.list_org_stores()}
                    self._loaded_at = time.monotonic()
        binding = self._bindings.get(org_id)
        if binding is None:
            return self.default
        if self.master_key is None:
            raise StoreError("MEMTRACE_MASTER_KEY is needed to reach this org's store")
        try:
            url = unseal(self.master_key, org_id, binding.url_cipher, binding.url_nonce)
        except SecretError as exc:
            raise StoreError(str(exc)) from exc
        async with self._lock:
            store = self._stores.get(url)
            if store is None:
                store = self.opener(url)
                await store.open()
                self._stores[url] = store
            if (url, org_id) not in self._ready:
                org = await self.default.get_org(org_id)
                if org is not None:
                    with contextlib.suppress(DuplicateName):  # its own store needs the row too
                        await store.create_org(org)
                self._ready.add((url, org_id))
        return store

    # organisations, keys and bindings live in the default store

    async def create_org(self, org: OrgRecord) -> None:
        """Insert an org."""
        await self.default.create_org(org)

    async def list_orgs(self) -> list[OrgRecord]:
        """All orgs."""
        return await self.default.list_orgs()

    async def get_org(self, org_id: str) -> OrgRecord | None:
        """One org."""
        return await self.default.get_org(org_id)

    async def org_usage(self, org_id: str) -> dict[str, int]:
        """Keys from the default store, the rest from the org's store."""
        usage = await self.default.org_usage(org_id)
        tenant = await self._tenant(org_id)
        if tenant is not self.default:
            own = await tenant.org_usage(org_id)
            usage.update({k: v for k, v in own.items() if k != "api_keys"})
        return usage

    async def delete_org(self, org_id: str) -> bool:
        """Delete an org everywhere it has data."""
        tenant = await self._tenant(org_id)
        if tenant is not self.default:
            await tenant.delete_org(org_id)
        return await self.default.delete_org(org_id)

    async def create_key(
        self, org_id: str, name: str, digest: str, prefix: str, permissions: str, now_ns: int
    ) -> ApiKeyRecord:
        """Store a key digest."""
        return await self.default.create_key(org_id, name, digest, prefix, permissions, now_ns)

    async def list_keys(self, org_id: str) -> list[ApiKeyRecord]:
        """Keys of one org."""
        return await self.default.list_keys(org_id)

    async def revoke_key(self, key_id: int, org_id: str | None = None) -> bool:
        """Delete a key."""
        return await self.default.revoke_key(key_id, org_id)

    async def find_key(self, digest: str) -> ApiKeyRecord | None:
        """The key with this digest."""
        return await self.default.find_key(digest)

    async def set_org_store(self, binding: OrgStoreBinding) -> None:
        """Bind an org to its own store."""
        await self.default.set_org_store(binding)
        self._loaded_at = float("-inf")

    async def list_org_stores(self) -> list[OrgStoreBinding]:
        """Every binding."""
        return await self.default.list_org_stores()

    async def delete_org_store(self, org_id: str) -> bool:
        """Remove a binding."""
        removed = await self.default.delete_org_store(org_id)
        self._loaded_at = float("-inf")
        return removed

    # tenant data goes to the org's store

    async def register_agent(self, org_id: str, agent: AgentRecord) -> AgentRecord:
        """Insert or adopt an agent."""
        return await (await self._tenant(org_id)).register_agent(org_id, agent)

    async def ensure_agent(self, org_id: str, ref: str, implicit: AgentRecord) -> AgentRecord:
        """Resolve or register an agent."""
        return await (await self._tenant(org_id)).ensure_agent(org_id, ref, implicit)

    async def get_agent(self, org_id: str, ref: str) -> AgentRecord | None:
        """One agent."""
        return await (await self._tenant(org_id)).get_agent(org_id, ref)

    async def list_agents(self, org_id: str) -> list[AgentRecord]:
        """Agents of an org."""
        return await (await self._tenant(org_id)).list_agents(org_id)

    async def delete_agent(self, org_id: str, agent_id: str) -> bool | int:
        """Delete an agent."""
        return await (await self._tenant(org_id)).delete_agent(org_id, agent_id)

    async def agent_stats(self, org_id: str, agent_id: str, now_ns: int) -> AgentStatsRecord:
        """Counts for an agent."""
        return await (await self._tenant(org_id)).agent_stats(org_id, agent_id, now_ns)

    async def create_session(self, org_id: str, session: SessionRecord) -> None:
        """Insert a session."""
        await (await self._tenant(org_id)).create_session(org_id, session)

    async def get_session(self, org_id: str, session_id: str) -> SessionRecord | None:
        """One session."""
        return await (await self._tenant(org_id)).get_session(org_id, session_id)

    async def list_sessions(self, org_id: str, agent_id: str | None) -> list[SessionRecord]:
        """Sessions of an org."""
        return await (await self._tenant(org_id)).list_sessions(org_id, agent_id)

    async def update_session(
        self,
        org_id: str,
        session_id: str,
        status: str | None,
        metadata_patch: dict[str, Any] | None,
        now_ns: int,
    ) -> SessionRecord | None:
        """Update a session."""
        tenant = await self._tenant(org_id)
        return await tenant.update_session(org_id, session_id, status, metadata_patch, now_ns)

    async def insert_memories(
        self, org_id: str, memories: Sequence[MemoryRecord], dedup_window_ns: int | None
    ) -> list[bool]:
        """Insert memories."""
        return await (await self._tenant(org_id)).insert_memories(org_id, memories, dedup_window_ns)

    async def get_memory(self, org_id: str, ref: str) -> MemoryRecord | None:
        """One memory."""
        return await (await self._tenant(org_id)).get_memory(org_id, ref)

    async def query_memories(self, org_id: str, flt: MemoryFilter) -> list[MemoryRecord]:
        """Memories matching a filter."""
        return await (await self._tenant(org_id)).query_memories(org_id, flt)

    # embeddings

    async def pending_embeddings(
        self, org_id: str, after_rid: int, limit: int
    ) -> list[tuple[int, str]]:
        """Memories of the org without an embedding."""
        return await (await self._tenant(org_id)).pending_embeddings(org_id, after_rid, limit)

    async def put_embeddings(self, org_id: str, rows: Sequence[tuple[int, bytes]]) -> None:
        """Store embeddings."""
        await (await self._tenant(org_id)).put_embeddings(org_id, rows)

    async def embedded_memories(
        self, org_id: str, flt: MemoryFilter
    ) -> list[tuple[MemoryRecord, bytes]]:
        """Memories with embeddings."""
        return await (await self._tenant(org_id)).embedded_memories(org_id, flt)

    # lifecycle

    async def set_org_retention(self, org_id: str, days: int | None) -> bool:
        """Retention is org metadata: the default store."""
        return await self.default.set_org_retention(org_id, days)

    async def delete_memory(self, org_id: str, memory_id: str) -> bool:
        """Erase one memory."""
        return await (await self._tenant(org_id)).delete_memory(org_id, memory_id)

    async def delete_memories(self, org_id: str, flt: MemoryFilter) -> int:
        """Erase matching memories."""
        return await (await self._tenant(org_id)).delete_memories(org_id, flt)

    async def count_memories(self, org_id: str, flt: MemoryFilter) -> int:
        """Count matching memories."""
        return await (await self._tenant(org_id)).count_memories(org_id, flt)

    async def delete_session(self, org_id: str, session_id: str, cascade: bool) -> bool:
        """Delete a session."""
        return await (await self._tenant(org_id)).delete_session(org_id, session_id, cascade)

    async def erase_agent(self, org_id: str, agent: AgentRecord) -> None:
        """Erase an agent and everything of it."""
        await (await self._tenant(org_id)).erase_agent(org_id, agent)

    async def update_agent(
        self,
        org_id: str,
        agent_id: str,
        description: str | None,
        config_patch: dict[str, Any] | None,
    ) -> AgentRecord | None:
        """Update an agent."""
        tenant = await self._tenant(org_id)
        return await tenant.update_agent(org_id, agent_id, description, config_patch)

    async def purge_expired(self, now_ns: int, retention_floors: dict[str, int]) -> int:
        """Purge the default store and every org store opened so far."""
        erased = await self.default.purge_expired(now_ns, retention_floors)
        for store in list(self._stores.values()):
            erased += await store.purge_expired(now_ns, retention_floors)
        return erased

    async def export_memories(
        self, org_id: str, agent_id: str | None, after: tuple[int, int] | None, limit: int
    ) -> list[tuple[tuple[int, int], MemoryRecord]]:
        """A page of an org's memories."""
        return await (await self._tenant(org_id)).export_memories(org_id, agent_id, after, limit)

    async def import_memories(self, org_id: str, memories: Sequence[MemoryRecord]) -> int:
        """Import memories."""
        return await (await self._tenant(org_id)).import_memories(org_id, memories)

    async def import_agent(self, org_id: str, agent: AgentRecord) -> bool:
        """Import an agent."""
        return await (await self._tenant(org_id)).import_agent(org_id, agent)

    async def import_session(self, org_id: str, session: SessionRecord) -> bool:
        """Import a session."""
        return await (await self._tenant(org_id)).import_session(org_id, session)
