"""Web console sign-ins: an API key opens a session held in the control store.

The browser holds an opaque random token; the store holds only its SHA-256 digest, the
digest of the API key that opened it and a CSRF token. Every request re-checks that key
through the :class:`Authenticator`, so a revoked key ends its console sessions within
``auth.key_cache_seconds``, in every process sharing the store.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from memtrace_server.core.errors import RateLimited, Unauthorized
from memtrace_server.core.ids import key_digest
from memtrace_server.core.records import ConsoleSessionRecord
from memtrace_server.core.timefmt import NS_PER_SECOND, now_ns
from memtrace_server.service.auth import Authenticator, Principal
from memtrace_server.storage.base import ControlStore

# Activity is written back at most this often, so browsing is not a write per page.
TOUCH_EVERY_NS = 60 * NS_PER_SECOND


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """Who a console request acts as, and the CSRF token its forms must carry."""

    principal: Principal
    csrf_token: str


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A new console session: the token for the cookie, and who it acts as."""

    token: str
    user: ConsoleUser


def token_digest(token: str) -> str:
    """The digest under which a session token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SignInThrottle:
    """At most ``max_failures`` failed sign-ins per client address in ``window`` seconds.

    Per process, like the API's rate limit: behind N processes an address gets N times
    the attempts, still far too few to guess a 256-bit key.
    """

    def __init__(
        self,
        max_failures: int = 10,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float]:
        now = self.clock()
        times = self._failures.setdefault(address, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        return times

    def check(self, address: str) -> None:
        """Raise RateLimited while ``address`` has used up its failures."""
        times = self._recent(address)
        if len(times) >= self.max_failures:
            wait = int(self.window - (self.clock() - times[0])) + 1
            raise RateLimited("too many failed sign-ins; try again later", retry_after=wait)

    def failed(self, address: str) -> None:
        """Count a failed sign-in from ``address``."""
        self._recent(address).append(self.clock())
        if len(self._failures) > 100_000:  # forget quiet addresses rather than grow
            self._failures = {a: t for a, t in self._failures.items() if t}


class ConsoleSessions:
    """Sign in, resume and sign out console sessions."""

    def __init__(
        self,
        control: ControlStore,
        auth: Authenticator,
        *,
        idle_seconds: float = 8 * 3600,
        throttle: SignInThrottle | None = None,
    ) -> None:
        self.control = control
        self.auth = auth
        self.idle_ns = int(idle_seconds * NS_PER_SECOND)
        self.throttle = throttle or SignInThrottle()

    async def sign_in(self, api_key: str, address: str) -> SignedIn:
        """Open a session for a valid key; 401 for a wrong one, 429 after too many."""
        self.throttle.check(address)
        api_key = api_key.strip()
        digest = key_digest(api_key)
        try:
            if not api_key:
                raise Unauthorized("missing API key")
            principal = await self.auth.authenticate_digest(digest)
        except Unauthorized:
            self.throttle.failed(address)
            raise
        now = now_ns()
        await self.control.purge_console_sessions(now - self.idle_ns)
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        record = ConsoleSessionRecord(token_digest(token), principal.org_id, digest, csrf, now, now)
        await self.control.create_console_session(record)
        return SignedIn(token, ConsoleUser(principal, csrf))

    async def resume(self, token: str | None) -> ConsoleUser | None:
        """The user of a live session, or None (unknown, idle too long, or key revoked)."""
        if not token or len(token) > 256:
            return None
        digest = token_digest(token)
        record = await self.control.get_console_session(digest)
        if record is None:
            return None
        now = now_ns()
        if now - record.last_seen_at_ns > self.idle_ns:
            await self.control.delete_console_session(digest)
            return None
        try:
            principal = await self.auth.authenticate_digest(record.key_digest)
        except Unauthorized:
            await self.control.delete_console_session(digest)
            return None
        if principal.org_id != record.org_id:
            await self.control.delete_console_session(digest)
            return None
        if now - record.last_seen_at_ns > TOUCH_EVERY_NS:
            await self.control.touch_console_session(digest, now)
        return ConsoleUser(principal, record.csrf_token)

    async def sign_out(self, token: str | None) -> None:
        """End the session (nothing happens for an unknown token)."""
        if token and len(token) <= 256:
            await self.control.delete_console_session(token_digest(token))
