"""Organisations and API keys: the admin CLI's use cases and first-run bootstrap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable

from memtrace_server.core.errors import ApiError
from memtrace_server.core.ids import key_digest, new_api_key, new_org_id
from memtrace_server.core.records import PERMISSIONS, ApiKeyRecord, OrgRecord, OrgStoreBinding
from memtrace_server.core.timefmt import now_ns
from memtrace_server.service.auth import DEFAULT_ORG
from memtrace_server.service.transfer import ImportReport, Transfer
from memtrace_server.storage.base import DuplicateName, Store, StoreError
from memtrace_server.storage.routing import Stores
from memtrace_server.storage.secrets import SecretError, mask_url, seal, unseal


class AdminError(Exception):
    """An admin command cannot be carried out; the message says why."""


def parse_permissions(text: str) -> str:
    """Normalise a comma list of permissions, refusing unknown ones."""
    items = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in items if p not in PERMISSIONS]
    if unknown or not items:
        raise AdminError(
            f"invalid permissions '{text}': use a comma list of {', '.join(PERMISSIONS)}"
        )
    return ",".join(p for p in PERMISSIONS if p in items)


class Admin:
    """Org, key, store binding, retention and transfer management: the admin CLI's use cases."""

    def __init__(
        self, stores: Stores, *, master_key: bytes | None = None, key_cache_seconds: float = 0.0
    ) -> None:
        self.stores = stores
        self.control = stores.control
        self.master_key = master_key  # MEMTRACE_MASTER_KEY, needed for org store bindings
        # Servers may honour a revoked key for this long (auth.key_cache_seconds).
        self.key_cache_seconds = key_cache_seconds

    async def _existing_org(self, org_id: str) -> OrgRecord:
        org = await self.control.get_org(org_id)
        if org is None:
            raise AdminError(f"org '{org_id}' not found; create it first with memtrace org create")
        return org

    async def list_orgs(self) -> list[OrgRecord]:
        """Every org, oldest first."""
        return await self.control.list_orgs()

    async def create_org(self, name: str, org_id: str | None = None) -> OrgRecord:
        """Create an org with a fresh ``org_…`` id (or the given one)."""
        name = name.strip()
        if not name:
            raise AdminError("org name must not be empty")
        org = OrgRecord(org_id or new_org_id(), name, now_ns())
        try:
            await self.control.create_org(org)
        except DuplicateName as exc:
            raise AdminError(str(exc)) from exc
        return org

    async def delete_org(self, org_id: str, *, cascade: bool) -> None:
        """Delete an org; with data in it only when ``cascade`` is set."""
        await self._existing_org(org_id)
        keys = await self.control.list_keys(org_id)
        usage = {"api_keys": len(keys), **await (await self.stores.tenant(org_id)).usage(org_id)}
        if any(usage.values()) and not cascade:
            counts = ", ".join(f"{n} {k.replace('api_', '')}" for k, n in usage.items())
            raise AdminError(
                f"org '{org_id}' still has {counts}; pass --cascade to delete it with all of them"
            )
        for key in keys:
            await self.control.revoke_key(key.id, org_id)
        if keys and self.key_cache_seconds > 0:
            # Servers that cached a key may accept requests for this long after the revoke;
            # erase only after that (plus a second for requests already in flight), so
            # nothing written with a revoked key outlives the org.
            await asyncio.sleep(self.key_cache_seconds + 1)
        await self.stores.delete_org(org_id)

    async def create_key(
        self, org_id: str, name: str, permissions: str = "read,write"
    ) -> tuple[str, ApiKeyRecord]:
        """Create a key; the plain key is returned once and never stored."""
        perms = parse_permissions(permissions)
        if not name.strip():
            raise AdminError("key name must not be empty")
        await self._existing_org(org_id)
        key = new_api_key()
        try:
            record = await self.control.create_key(
                org_id, name.strip(), key_digest(key), key[:12], perms, now_ns()
            )
        except DuplicateName as exc:
            raise AdminError(str(exc)) from exc
        return key, record

    async def list_keys(self, org_id: str) -> list[ApiKeyRecord]:
        """An org's keys (digests only), oldest first."""
        return await self.control.list_keys(org_id)

    async def revoke_key(self, key_id: int, org_id: str | None = None) -> None:
        """Revoke a key (only if it belongs to ``org_id``, when given)."""
        if not await self.control.revoke_key(key_id, org_id):
            raise AdminError(f"key {key_id} not found")

    async def set_retention(self, org_id: str, days: int) -> None:
        """Keep an org's memories ``days`` days (0: forever). Reads in this process apply it
        at once; servers sharing the store, within a second (``Stores.org``)."""
        if not await self.control.set_org_retention(org_id, days or None):
            raise AdminError(f"org '{org_id}' not found")
        self.stores.forget_org(org_id)

    async def retention_days(self, org_id: str) -> int | None:
        """How many days the org keeps memories (None: forever)."""
        return (await self._existing_org(org_id)).retention_days

    def _master_key(self) -> bytes:
        key = self.master_key
        if key is None:
            raise AdminError(
                "MEMTRACE_MASTER_KEY is not set; generate one with `memtrace keygen master`"
            )
        return key

    async def set_org_store(self, org_id: str, url: str, opener: Callable[[str], Store]) -> None:
        """Bind ``org_id`` to the store at ``url`` after checking that it opens."""
        master_key = self._master_key()
        await self._existing_org(org_id)
        try:
            candidate = opener(url)
            await candidate.open()
        except (ValueError, StoreError) as exc:
            raise AdminError(f"cannot use {mask_url(url)}: {exc}") from exc
        await candidate.close()
        cipher, nonce = seal(master_key, org_id, url)
        await self.control.set_org_store(OrgStoreBinding(org_id, cipher, nonce, now_ns()))
        self.stores.forget_bindings()

    async def show_org_store(self, org_id: str) -> str:
        """The org's store URL, password masked, or a note that it uses the default."""
        bindings = await self.control.list_org_stores()
        binding = next((b for b in bindings if b.org_id == org_id), None)
        if binding is None:
            return f"{org_id} uses the default store"
        try:
            url = unseal(self._master_key(), org_id, binding.url_cipher, binding.url_nonce)
        except SecretError as exc:
            raise AdminError(str(exc)) from exc
        return mask_url(url)

    async def remove_org_store(self, org_id: str) -> None:
        """Send an org back to the default store (its data in the old store stays there)."""
        if not await self.control.delete_org_store(org_id):
            raise AdminError(f"org '{org_id}' has no store of its own")
        self.stores.forget_bindings()

    async def export(self, org_id: str, agent_id: str | None) -> AsyncIterator[bytes]:
        """An org's agents, sessions and memories as JSON lines."""
        await self._existing_org(org_id)
        async for line in Transfer(self.stores).export(org_id, agent_id):
            yield line

    async def import_lines(self, org_id: str, lines: Iterable[bytes | str]) -> ImportReport:
        """Import export lines into an existing org."""
        await self._existing_org(org_id)
        try:
            return await Transfer(self.stores).import_lines(org_id, lines)
        except ApiError as exc:
            raise AdminError(exc.message) from exc

    async def bootstrap(self) -> str | None:
        """On an empty store, create ``org_default`` and an admin key; return that key once."""
        if await self.control.list_orgs():
            return None
        try:
            await self.create_org("Default", DEFAULT_ORG)
        except AdminError:
            return None  # another process bootstrapped first
        key, _ = await self.create_key(DEFAULT_ORG, "admin", "read,write,admin")
        return key
