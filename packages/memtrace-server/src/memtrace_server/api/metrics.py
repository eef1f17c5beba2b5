"""Prometheus metrics, one registry per app (no global state)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Request counts and latency by route, and memories written."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "memtrace_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "memtrace_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.memories_written = Counter(
            "memtrace_memories_written",
            "Memories stored (duplicates skipped are not counted).",
            registry=self.registry,
        )
        self.embedded = Gauge(
            "memtrace_memories_embedded",
            "Memories embedded for hybrid search by this process since it started.",
            registry=self.registry,
        )
        self.duplicates = Counter(
            "memtrace_memories_duplicate",
            "Memories refused or skipped as duplicates.",
            registry=self.registry,
        )
        # The labelled series of each route, found once: ``labels()`` costs more than the
        # update itself, and it is paid twice on every request.
        self._counts: dict[tuple[str, str, int], Any] = {}
        self._timings: dict[tuple[str, str], Any] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request by method, route template and status, and observe its latency."""
        count = self._counts.get((method, route, status))
        if count is None:
            count = self._counts[method, route, status] = self.requests.labels(
                method, route, str(status)
            )
        count.inc()
        timing = self._timings.get((method, route))
        if timing is None:
            timing = self._timings[method, route] = self.latency.labels(method, route)
        timing.observe(seconds)
