"""Who is calling: API keys to principals, and permission checks."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from memtrace_server.core.errors import Forbidden, Unauthorized
from memtrace_server.core.ids import key_digest
from memtrace_server.core.timefmt import now_ns
from memtrace_server.storage.base import Store

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
    """Resolves API keys against the store on every request.

    No cache: a key revoked by any process sharing the store is refused on the next request.
    """

    def __init__(self, store: Store, *, enabled: bool = True) -> None:
        self.store = store
        self.enabled = enabled

    async def authenticate(self, key: str | None) -> Principal:
        """The principal for ``key``; 401 when it is missing, unknown or expired."""
        if not self.enabled:
            return Principal(DEFAULT_ORG, None, frozenset({"admin"}))
        if not key:
            raise Unauthorized("missing API key")
        digest = key_digest(key)
        record = await self.store.find_key(digest)
        # The lookup is by digest, so its timing says nothing about the key; the compare
        # below is constant-time for completeness.
        if record is None or not hmac.compare_digest(record.key_digest, digest):
            raise Unauthorized("invalid API key")
        if record.expires_at_ns is not None and record.expires_at_ns <= now_ns():
            raise Unauthorized("invalid API key")
        return Principal(record.org_id, record.id, record.permissions)


def key_from_headers(x_api_key: str | None, authorization: str | None) -> str | None:
    """The key as the reference reads it: ``x-api-key``, else ``Authorization`` minus ``Bearer ``."""
    if x_api_key:
        return x_api_key
    if authorization:
        return authorization[7:] if authorization.startswith("Bearer ") else authorization
    return None
