"""Per-key token buckets (per server process)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from memtrace_server.core.errors import RateLimited


class RateLimiter:
    """``rate`` requests a second per key, with bursts up to ``burst``; 0 turns it off."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self.clock = clock
        self._buckets: dict[object, tuple[float, float]] = {}

    def take(self, key: object) -> None:
        """Spend one token of ``key``'s bucket or raise RateLimited."""
        if self.rate <= 0:
            return
        now = self.clock()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self.rate)
            raise RateLimited(
                f"rate limit exceeded: {self.rate:g} requests per second for this API key",
                retry_after=max(wait, 1),
            )
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > 100_000:  # forget idle keys rather than grow without bound
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
