"""``/api/v1/memories`` and ``/api/v1/search``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query
from starlette.responses import Response

from memtrace_server.api.deps import Services, reader, services, writer
from memtrace_server.api.responses import json_response
from memtrace_server.api.schemas import (
    EraseOut,
    MemoryBatchOut,
    MemoryListOut,
    MemoryOut,
    MemoryVersionsOut,
    SearchOut,
    errors,
)
from memtrace_server.core.errors import Conflict
from memtrace_server.core.explain import explanation_to_wire
from memtrace_server.core.records import MemoryFilter
from memtrace_server.core.requests import (
    MAX_OFFSET,
    CreateMemoriesRequest,
    CreateMemoryBody,
    EraseRequest,
    SearchRequest,
)
from memtrace_server.core.timefmt import now_ns
from memtrace_server.core.wire import memory_to_wire
from memtrace_server.service.auth import Principal
from memtrace_server.service.memories import Page, list_filter

router = APIRouter(prefix="/api/v1", tags=["memories"])

TIME_HELP = "Relative window (30s, 15m, 24h, 7d, 2w; at most 365 days) or an RFC 3339 timestamp."


@dataclass
class PageQuery:
    """Query parameters every memory list shares; each route adds its scope and window."""

    memory_type: str | None
    event_type: str | None
    tags: str | None
    until: str | None
    limit: int | None
    offset: int | None
    order: str | None
    key: str | None
    include_superseded: bool | None
    metadata: str | None

    def filter(
        self, *, agent_id: str | None, session_id: str | None, since: str | None
    ) -> MemoryFilter:
        """The validated filter (400 on bad input)."""
        return list_filter(
            now=now_ns(),
            agent_id=agent_id,
            session_id=session_id,
            since=since,
            **{name: getattr(self, name) for name in self.__dataclass_fields__},
        )


async def page_query(
    memory_type: str | None = Query(None, description="Exact memory type."),
    event_type: str | None = Query(None, description="Exact event type."),
    tags: str | None = Query(None, description="Comma-separated tags, all required."),
    until: str | None = Query(None, description=TIME_HELP + " Upper bound; 'now' means none."),
    limit: int | None = Query(
        None, ge=0, le=MAX_OFFSET, description="Page size: default 100 (also for 0), at most 1000."
    ),
    offset: int | None = Query(None, ge=0, le=MAX_OFFSET, description="Memories to skip."),
    order: Literal["asc", "desc"] | None = Query(
        None, description="asc, or desc (default) by time."
    ),
    key: str | None = Query(None, description="Exactly this memory key."),
    include_superseded: bool | None = Query(
        None, description="Also older versions of keyed memories (hidden by default)."
    ),
    metadata: str | None = Query(
        None,
        description='JSON object of top-level metadata fields that must match exactly, e.g. {"plan": "pro"}.',
    ),
) -> PageQuery:
    """The shared list parameters (async: FastAPI runs plain dependencies in a thread)."""
    return PageQuery(
        memory_type,
        event_type,
        tags,
        until,
        limit,
        offset,
        order,
        key,
        include_superseded,
        metadata,
    )


def page_response(page: Page) -> Response:
    """The ``{"memories", "count", "has_more"}`` body shared by every list endpoint."""
    return json_response(
        {
            "memories": [memory_to_wire(m) for m in page.memories],
            "count": len(page.memories),
            "has_more": page.has_more,
        }
    )


@router.post(
    "/memories",
    status_code=201,
    summary="Store one memory or a batch",
    responses={201: {"model": MemoryOut | MemoryBatchOut}, **errors(400, 401, 403, 409, 413, 503)},
)
async def create_memories(
    body: Annotated[CreateMemoryBody, Body()],
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> Response:
    """Store a memory (409 on a duplicate) or ``{"memories": [...]}`` all at once.

    In a batch, duplicates are skipped silently and ``count`` says how many were stored;
    an invalid item rejects the whole batch and stores nothing.
    """
    if isinstance(body, CreateMemoriesRequest):
        stored = await svc.memories.create_many(principal.org_id, body.memories)
        svc.metrics.memories_written.inc(len(stored))
        svc.metrics.duplicates.inc(len(body.memories) - len(stored))
        return json_response(
            {"memories": [memory_to_wire(m) for m in stored], "count": len(stored)}, 201
        )
    try:
        record = await svc.memories.create(principal.org_id, body)
    except Conflict:
        svc.metrics.duplicates.inc()
        raise
    svc.metrics.memories_written.inc()
    return json_response(memory_to_wire(record), 201)


@router.get(
    "/memories",
    summary="List memories",
    responses={200: {"model": MemoryListOut}, **errors(400, 401, 403, 503)},
)
async def list_memories(
    agent_id: str | None = Query(None, description="Exact agent id."),
    session_id: str | None = Query(None, description="Exact session id."),
    since: str | None = Query(None, description=TIME_HELP + " Lower bound."),
    page: PageQuery = Depends(page_query),
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> Response:
    """Memories of the caller's org matching every given filter, newest first by default."""
    flt = page.filter(agent_id=agent_id, session_id=session_id, since=since)
    return page_response(await svc.memories.page(principal.org_id, flt))


@router.get(
    "/memories/{memory_id}",
    summary="Get one memory",
    responses={200: {"model": MemoryOut}, **errors(400, 401, 403, 404, 503)},
)
async def get_memory(
    memory_id: str,
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> Response:
    """A memory by its ``mem_…`` id, or else the newest memory with that dedup key."""
    return json_response(memory_to_wire(await svc.memories.get(principal.org_id, memory_id)))


@router.get(
    "/memories/{memory_id}/versions",
    summary="Every version of a keyed memory",
    responses={200: {"model": MemoryVersionsOut}, **errors(400, 401, 403, 404, 503)},
)
async def memory_versions(
    memory_id: str,
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> Response:
    """Every version of this memory's key, newest first; a memory without a key is its only
    version. The current version has no ``superseded_by``."""
    versions = await svc.memories.versions(principal.org_id, memory_id)
    return json_response(
        {"memories": [memory_to_wire(m) for m in versions], "count": len(versions)}
    )


@router.delete(
    "/memories/{memory_id}",
    status_code=204,
    summary="Erase one memory",
    responses={204: {"description": "Erased"}, **errors(400, 401, 403, 404, 503)},
)
async def delete_memory(
    memory_id: str,
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> Response:
    """Erase a memory by its id, from every index. Permanent."""
    await svc.memories.delete(principal.org_id, memory_id)
    return Response(status_code=204)


@router.post(
    "/memories/delete",
    summary="Erase memories by filter",
    responses={200: {"model": EraseOut}, **errors(400, 401, 403, 503)},
)
async def erase_memories(
    body: Annotated[EraseRequest, Body()],
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> Response:
    """Erase every memory matching the filters (at least one is required). Permanent.

    With ``dry_run`` nothing is erased and ``deleted`` is how many would be.
    """
    count = await svc.memories.erase(principal.org_id, body)
    return json_response({"deleted": count, "dry_run": body.dry_run})


@router.post(
    "/search",
    summary="Search memories",
    responses={200: {"model": SearchOut}, **errors(400, 401, 403, 503)},
)
async def search(
    body: Annotated[SearchRequest, Body()],
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> Response:
    """Memories matching structured filters (tags: exact, all required), newest first."""
    started = time.perf_counter()
    if body.explain:
        explained = await svc.memories.search_explained(principal.org_id, body)
        results = [
            {**memory_to_wire(m), "explanation": explanation_to_wire(e)} for m, e in explained
        ]
    else:
        results = [memory_to_wire(m) for m in await svc.memories.search(principal.org_id, body)]
    elapsed_ms = int((time.perf_counter() - started) * 1000)
    mode = svc.memories.ranking_mode(body.mode, body.query)
    return json_response(
        {
            "results": results,
            "count": len(results),
            "query_time_ms": elapsed_ms,
        }
        | ({"mode": mode} if mode else {})
    )
