"""The application factory."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from memtrace_server import __version__
from memtrace_server.api.deps import Services
from memtrace_server.api.errors import install_error_handlers
from memtrace_server.api.fastpath import hot_routes
from memtrace_server.api.metrics import Metrics
from memtrace_server.api.middleware import RequestMiddleware
from memtrace_server.api.routes import agents, export, health, memories, sessions
from memtrace_server.config import Settings
from memtrace_server.console.pages import build_router as console_router
from memtrace_server.console.services import ConsoleServices
from memtrace_server.console.web import SECURITY_HEADERS
from memtrace_server.service import semantic
from memtrace_server.service.admin import Admin
from memtrace_server.service.agents import Agents
from memtrace_server.service.auth import Authenticator
from memtrace_server.service.console_sessions import ConsoleSessions
from memtrace_server.service.memories import HYBRID_OFF, Memories
from memtrace_server.service.overview import Overview
from memtrace_server.service.ratelimit import RateLimiter
from memtrace_server.service.semantic import Embedder, Indexer
from memtrace_server.service.transfer import Transfer
from memtrace_server.storage.base import Store, StoreError
from memtrace_server.storage.registry import stores_from_url
from memtrace_server.storage.routing import Stores

log = logging.getLogger("memtrace.server")

DESCRIPTION = """Memory for AI agents: store what agents did, saw and decided; recall it by
time window and filters; get LLM-ready markdown context for a session.

Authenticate with `x-api-key: mtk_…` or `Authorization: Bearer mtk_…`. Every error body is
`{"error": "<message>"}`. Wire-compatible with Memtrace 0.2.0."""


class App(FastAPI):
    """FastAPI with ``RequestMiddleware`` (and CORS, when configured) in front of Starlette's
    own middleware stack rather than inside it: a hot route's request passes through one
    middleware, not the five layers FastAPI and Starlette wrap around every request (their
    error, telemetry and body-limit middleware, each a coroutine every resumption runs
    through). Every other request goes on to FastAPI as before."""

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Enter through ``front`` once ``create_app`` has set it."""
        if self.front is None:
            await super().__call__(scope, receive, send)
        else:
            scope["app"] = self  # as Starlette sets it, for what runs in front
            await self.front(scope, receive, send)

    async def inner(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI itself, behind ``front``."""
        await super().__call__(scope, receive, send)


async def purge_forever(memories: Memories, interval: float) -> None:
    """Erase expired memories and those past their org's retention, every ``interval`` s."""
    while True:
        try:
            erased = await memories.purge()
            if erased:
                log.info("purged expired memories", extra={"erased": erased})
        except StoreError as exc:
            log.warning("purge failed: %s", exc)
        await asyncio.sleep(interval)


def _no_telemetry() -> dict[str, Any]:
    """Turn off FastAPI's built-in OpenTelemetry hooks where it has them (newer releases).

    We send no telemetry; its per-request checks also cost about 5 % of a request.
    """
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    off = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    return {"telemetry": {**off, "auto_configure": False}}


def _semantic(settings: Settings, stores: Stores) -> tuple[Embedder | None, Indexer | None, str]:
    """The embedder and its indexer when hybrid search is on and installed, else why not."""
    if not settings.search_semantic:
        return None, None, HYBRID_OFF
    if not semantic.installed():
        reason = "hybrid search is not installed on this server: install memtrace-server[semantic]"
        log.warning("search.semantic is on but %s", reason.split(": ", 1)[1])
        return None, None, reason
    embedder = Embedder()
    return embedder, Indexer(stores, embedder), HYBRID_OFF


def create_app(
    settings: Settings, store: Store | Stores | None = None, *, fast_path: bool = True
) -> FastAPI:
    """Build the app. The stores are opened and closed by the app's lifespan.

    Passing ``store`` (one store, or ``Stores`` with routing) lets tests and embedders
    supply it; otherwise it comes from ``settings.resolved_store_url``. The hot routes are
    served by ``api.fastpath`` unless ``fast_path`` is False: then FastAPI serves every
    route (the tests compare the two).
    """
    the_store = (
        (store if isinstance(store, Stores) else Stores(store))
        if store is not None
        else stores_from_url(
            settings.resolved_store_url,
            synchronous=settings.store_synchronous,
            master_key=settings.master_key,
            ingest_process=settings.store_ingest_process,
        )
    )
    metrics = Metrics()
    embedder, indexer, hybrid_unavailable = _semantic(settings, the_store)
    if indexer is not None:
        metrics.embedded.set_function(lambda: indexer.embedded)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if embedder is not None:
            # refuse to start on missing or unverified model weights, not on the first search
            await embedder.load_async()
        await the_store.open()
        app.state.started = time.monotonic()
        purger = asyncio.get_running_loop().create_task(
            purge_forever(app.state.services.memories, settings.purge_interval_seconds)
        )
        background = [purger]
        if indexer is not None:
            background.append(asyncio.get_running_loop().create_task(indexer.run_forever()))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await the_store.close()

    app = App(
        title="Memtrace",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        **_no_telemetry(),
    )
    app.state.services = Services(
        settings=settings,
        stores=the_store,
        auth=Authenticator(
            the_store.control,
            enabled=settings.auth_enabled,
            cache_seconds=settings.key_cache_seconds,
        ),
        limiter=RateLimiter(settings.rate_per_second, settings.rate_burst),
        memories=Memories(
            the_store,
            dedup_window_hours=settings.dedup_window_hours if settings.dedup_enabled else None,
            max_batch=settings.max_batch,
            max_content_bytes=settings.max_content_bytes,
            max_metadata_bytes=settings.max_metadata_bytes,
            max_tags=settings.max_tags,
            embedder=embedder,
            hybrid_unavailable=hybrid_unavailable,
            on_write=indexer.notify if indexer is not None else None,
        ),
        agents=Agents(the_store),
        transfer=Transfer(the_store),
        metrics=metrics,
    )
    app.state.started = time.monotonic()
    install_error_handlers(app)
    for module in (health, memories, agents, sessions, export):
        app.include_router(module.router)
    if settings.console_enabled:
        install_console(app, settings)
    front: ASGIApp = RequestMiddleware(
        app.inner,
        max_body_bytes=settings.max_body_bytes,
        metrics=metrics,
        fast=(hot_routes(), app.state.services) if fast_path else None,
    )
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:  # off unless configured
        front = CORSMiddleware(
            front,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["x-api-key", "authorization", "content-type", "x-request-id"],
        )
    app.front = front
    return app


def install_console(app: FastAPI, settings: Settings) -> None:
    """Serve the web console under ``/ui/`` (``GET /`` redirects there), outside the OpenAPI
    document, on the same services as the API."""
    svc: Services = app.state.services
    app.state.console = ConsoleServices(
        memories=svc.memories,
        agents=svc.agents,
        overview=Overview(svc.stores),
        admin=Admin(svc.stores, key_cache_seconds=settings.key_cache_seconds),
        transfer=svc.transfer,
        sessions=ConsoleSessions(
            svc.stores.control, svc.auth, idle_seconds=settings.console_idle_hours * 3600
        ),
        secure_cookie=settings.console_secure_cookie,
    )
    app.include_router(console_router())

    @app.get("/", include_in_schema=False)
    @app.get("/ui", include_in_schema=False)
    async def to_console() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307, headers=SECURITY_HEADERS)


WORKER_SETTINGS_VARIABLE = "MEMTRACE_WORKER_SETTINGS"


def create_worker_app() -> FastAPI:
    """The app of one ``memtrace serve --workers N`` process: the settings the parent
    resolved come in ``MEMTRACE_WORKER_SETTINGS`` (the parent read them once)."""
    from memtrace_server.config import settings_from_json
    from memtrace_server.logs import configure_logging

    settings = settings_from_json(os.environ[WORKER_SETTINGS_VARIABLE])
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
