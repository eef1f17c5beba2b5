"""``/health``, ``/ready`` and ``/metrics`` (no authentication)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from memtrace_server import __version__
from memtrace_server.api.deps import Services, services
from memtrace_server.api.responses import json_response
from memtrace_server.api.schemas import HealthOut, ReadyOut
from memtrace_server.storage.base import StoreError

router = APIRouter(tags=["health"])


def _duration(seconds: float) -> str:
    """Go's duration format, as the reference prints ``uptime``."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text


@router.get("/health", summary="Liveness", responses={200: {"model": HealthOut}})
async def health(request: Request) -> Response:
    """Always 200 while the process serves requests."""
    started: float = request.app.state.started
    return json_response(
        {
            "status": "ok",
            "service": "memtrace",
            "version": __version__,
            "uptime": _duration(time.monotonic() - started),
        }
    )


@router.get(
    "/ready",
    summary="Readiness",
    responses={200: {"model": ReadyOut}, 503: {"model": ReadyOut}},
)
async def ready(svc: Services = Depends(services)) -> Response:
    """200 when the store answers a query, else 503."""
    try:
        await svc.stores.ping()
    except StoreError:
        return json_response({"status": "not ready", "store": "unreachable"}, 503)
    return json_response({"status": "ready", "store": "ok"})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(svc: Services = Depends(services)) -> Response:
    """Request counts and latency histograms by route, and memories written."""
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
