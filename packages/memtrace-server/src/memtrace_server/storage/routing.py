"""Per-organisation routing: an org may keep its agents, sessions and memories in a store
of its own, while orgs, keys and bindings stay in the control (default) store.

Bindings are re-read from the control store at most once a second, so a binding set or
removed by ``memtrace org set-store`` (any process) takes effect without a restart. An
org's row (its retention, read by every memory read) is kept for as long.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from memtrace_server.core.records import OrgRecord, OrgStoreBinding
from memtrace_server.storage.base import ControlStore, Store, StoreError, TenantStore
from memtrace_server.storage.secrets import SecretError, unseal

log = logging.getLogger("memtrace.storage")
REFRESH_SECONDS = 1.0
MAX_CACHED_ORGS = 10_000


class Stores:
    """The control store, and for each org the tenant store that holds its data."""

    def __init__(
        self,
        default: Store,
        *,
        master_key: bytes | None = None,
        opener: Callable[[str], Store] | None = None,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self.default = default
        self.control: ControlStore = default
        self.master_key = master_key
        self._opener = opener
        self.refresh_seconds = refresh_seconds
        self._bindings: dict[str, OrgStoreBinding] = {}
        self._loaded_at = float("-inf")
        self._stores: dict[str, Store] = {}
        self._ready: set[tuple[str, str]] = set()
        self._orgs: dict[str, tuple[float, OrgRecord | None]] = {}
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Open the default store and check that every binding can be opened."""
        await self.default.open()
        bindings = await self.default.list_org_stores()
        key = self.master_key
        if bindings and key is None:
            await self.default.close()
            raise StoreError(
                f"{len(bindings)} org(s) are bound to their own store, but MEMTRACE_MASTER_KEY "
                "is not set; generate one with `memtrace keygen master`"
            )
        for binding in bindings:
            try:
                unseal(key or b"", binding.org_id, binding.url_cipher, binding.url_nonce)
            except SecretError as exc:
                log.error("%s; its requests will fail with 503", exc)

    async def close(self) -> None:
        """Close every store opened for an org, then the default one."""
        for store in self._stores.values():
            await store.close()
        self._stores.clear()
        self._ready.clear()
        await self.default.close()

    async def ping(self) -> None:
        """Ping the default store."""
        await self.default.ping()

    def forget_bindings(self) -> None:
        """Re-read the bindings on the next request (after this process changed one)."""
        self._loaded_at = float("-inf")

    async def org(self, org_id: str) -> OrgRecord | None:
        """The org's row, read again at most every ``refresh_seconds``: a change made by
        another process applies within that time, one made here at once (``forget_org``)."""
        now = time.monotonic()
        hit = self._orgs.get(org_id)
        if hit is not None and now - hit[0] <= self.refresh_seconds:
            return hit[1]
        org = await self.control.get_org(org_id)
        if len(self._orgs) >= MAX_CACHED_ORGS:
            self._orgs.clear()
        self._orgs[org_id] = (now, org)
        return org

    def forget_org(self, org_id: str) -> None:
        """Read the org's row again on its next request (after this process changed it)."""
        self._orgs.pop(org_id, None)

    def tenants(self) -> list[TenantStore]:
        """The default store and every org store opened so far."""
        return [self.default, *self._stores.values()]

    async def _binding(self, org_id: str) -> OrgStoreBinding | None:
        if time.monotonic() - self._loaded_at > self.refresh_seconds:
            async with self._lock:
                if time.monotonic() - self._loaded_at > self.refresh_seconds:
                    self._bindings = {b.org_id: b for b in await self.default.list_org_stores()}
                    self._loaded_at = time.monotonic()
        return self._bindings.get(org_id)

    async def own_store(self, org_id: str) -> Store | None:
        """The store an org is bound to, opened; None when it uses the default store."""
        binding = await self._binding(org_id)
        if binding is None:
            return None
        if self.master_key is None or self._opener is None:
            raise StoreError("MEMTRACE_MASTER_KEY is needed to reach this org's store")
        try:
            url = unseal(self.master_key, org_id, binding.url_cipher, binding.url_nonce)
        except SecretError as exc:
            raise StoreError(str(exc)) from exc
        async with self._lock:
            store = self._stores.get(url)
            if store is None:
                store = self._opener(url)
                await store.open()
                self._stores[url] = store
            if (url, org_id) not in self._ready:
                org = await self.default.get_org(org_id)
                if org is not None:  # its tenant rows refer to the org's row
                    await store.ensure_org(org)
                self._ready.add((url, org_id))
        return store

    async def tenant(self, org_id: str) -> TenantStore:
        """The store holding the org's agents, sessions and memories."""
        return await self.own_store(org_id) or self.default

    async def delete_org(self, org_id: str) -> bool:
        """Delete an org's data, its row wherever it is, its keys and its binding."""
        own = await self.own_store(org_id)
        if own is not None:
            await own.erase_org(org_id)
            await own.delete_org(org_id)
        await self.default.erase_org(org_id)
        deleted = await self.default.delete_org(org_id)
        self.forget_bindings()
        self.forget_org(org_id)
        return deleted
