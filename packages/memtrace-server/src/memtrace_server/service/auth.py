"""Who is calling: API keys to principals, and permission checks."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from memtrace_server.core.errors import Forbidden, Unauthorized
from memtrace_server.core.ids import key_digest
from memtrace_server.core.records import ApiKeyRecord
from memtrace_server.core.timefmt import now_ns
from memtrace_server.storage.base import ControlStore

DEFAULT_ORG = "org_default"


@dataclass(frozen=True, slots=True)
class Principal:
    """The organisation and permissions a request acts with."""

    org_id: str
    key_id: int | None
    permissions: frozenset[str]

    def require(self, permission: str) -> None:
        """Raise 403 unless the key holds ``permission`` (``admin`` holds them all)."""
        if permission not in self.permissions and "admin" not in self.permissions:
            raise Forbidden(f"this API key lacks the '{permission}' permission")


class Authenticator:
    """Resolves API keys against the store, remembering each answer for ``cache_seconds``.

    A key revoked by any process sharing the store is refused by every process within
    ``cache_seconds`` (0 reads the store on every request). Unknown keys are never
    cached, so a key created by the CLI works on its first request.
    """

    MAX_CACHED = 10_000

    def __init__(
        self, store: ControlStore, *, enabled: bool = True, cache_seconds: float = 1.0
    ) -> None:
        self.store = store
        self.enabled = enabled
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ApiKeyRecord]] = {}

    async def authenticate(self, key: str | None) -> Principal:
        """The principal for ``key``; 401 when it is missing, unknown or expired."""
        if not self.enabled:
            return Principal(DEFAULT_ORG, None, frozenset({"admin"}))
        if not key:
            raise Unauthorized("missing API key")
        return await self.authenticate_digest(key_digest(key))

    async def authenticate_digest(self, digest: str) -> Principal:
        """The principal for the key with this SHA-256 digest (a console session holds it)."""
        if not self.enabled:
            return Principal(DEFAULT_ORG, None, frozenset({"admin"}))
        record = await self._find(digest)
        # The lookup is by digest, so its timing says nothing about the key; the compare
        # below is constant-time for completeness.
        if record is None or not hmac.compare_digest(record.key_digest, digest):
            raise Unauthorized("invalid API key")
        if record.expires_at_ns is not None and record.expires_at_ns <= now_ns():
            raise Unauthorized("invalid API key")
        return Principal(record.org_id, record.id, record.permissions)

    async def _find(self, digest: str) -> ApiKeyRecord | None:
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        record = await self.store.find_key(digest)
        if record is None:
            self._cache.pop(digest, None)
        elif self.cache_seconds > 0:
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = (now, record)
        return record


def key_from_headers(x_api_key: str | None, authorization: str | None) -> str | None:
    """The key as the reference reads it: ``x-api-key``, else ``Authorization`` minus ``Bearer ``."""
    if x_api_key:
        return x_api_key
    if authorization:
        return authorization[7:] if authorization.startswith("Bearer ") else authorization
    return None
