"""``/api/v1/sessions``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query
from starlette.responses import Response

from memtrace_server.api.deps import Services, reader, services, writer
from memtrace_server.api.responses import json_response
from memtrace_server.api.routes.memories import TIME_HELP, PageQuery, page_query, page_response
from memtrace_server.api.schemas import (
    ContextOut,
    MemoryListOut,
    SessionListOut,
    SessionOut,
    errors,
)
from memtrace_server.core.requests import (
    ContextRequest,
    CreateSessionRequest,
    UpdateSessionRequest,
)
from memtrace_server.core.validation import check_id
from memtrace_server.core.wire import session_to_wire
from memtrace_server.service.auth import Principal

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])


@router.post(
    "",
    status_code=201,
    summary="Create a session",
    responses={201: {"model": SessionOut}, **errors(400, 401, 403, 404, 503)},
)
async def create_session(
    body: Annotated[CreateSessionRequest, Body()],
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> Response:
    """Open a session for an agent id or name; an unknown valid id registers that agent."""
    session = await svc.agents.create_session(principal.org_id, body)
    return json_response(session_to_wire(session), 201)


@router.get(
    "",
    summary="List sessions",
    responses={200: {"model": SessionListOut}, **errors(400, 401, 403, 503)},
)
async def list_sessions(
    agent_id: str | None = Query(None, description="Only sessions of this agent (id or name)."),
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> Response:
    """Sessions of the org, newest first."""
    sessions = await svc.agents.list_sessions(principal.org_id, agent_id)
    return json_response(
        {"sessions": [session_to_wire(s) for s in sessions], "count": len(sessions)}
    )


@router.get(
    "/{session_id}",
    summary="Get a session",
    responses={200: {"model": SessionOut}, **errors(400, 401, 403, 404, 503)},
)
async def get_session(
    session_id: str, principal: Principal = Depends(reader), svc: Services = Depends(services)
) -> Response:
    """One session."""
    return json_response(
        session_to_wire(await svc.agents.get_session(principal.org_id, session_id))
    )


@router.put(
    "/{session_id}",
    summary="Update a session",
    responses={200: {"model": SessionOut}, **errors(400, 401, 403, 404, 503)},
)
async def update_session(
    session_id: str,
    body: Annotated[UpdateSessionRequest, Body()],
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> Response:
    """Set the status (``closed`` stamps ``closed_at``, ``active`` clears it) and merge metadata."""
    session = await svc.agents.update_session(principal.org_id, session_id, body)
    return json_response(session_to_wire(session))


@router.delete(
    "/{session_id}",
    status_code=204,
    summary="Delete a session",
    responses={204: {"description": "Deleted"}, **errors(400, 401, 403, 404, 503)},
)
async def delete_session(
    session_id: str,
    cascade: bool = Query(False, description="Also erase the memories carrying its id."),
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> Response:
    """Delete a session; with ``cascade=true`` its memories are erased too. Permanent."""
    await svc.agents.delete_session(principal.org_id, session_id, cascade=cascade)
    return Response(status_code=204)


@router.get(
    "/{session_id}/memories",
    summary="Memories of a session",
    responses={200: {"model": MemoryListOut}, **errors(400, 401, 403, 503)},
)
async def session_memories(
    session_id: str,
    agent_id: str | None = Query(None, description="Exact agent id."),
    since: str | None = Query(None, description=TIME_HELP + " Default: all time."),
    page: PageQuery = Depends(page_query),
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> Response:
    """Memories carrying this session id, newest first by default."""
    flt = page.filter(agent_id=agent_id, session_id=check_id("session_id", session_id), since=since)
    return page_response(await svc.memories.page(principal.org_id, flt))


@router.post(
    "/{session_id}/context",
    summary="Session context as markdown",
    responses={200: {"model": ContextOut}, **errors(400, 401, 403, 503)},
)
async def session_context(
    session_id: str,
    body: Annotated[ContextRequest | None, Body()] = None,
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> Response:
    """The session's memories of the window (default 24 h, newest 100) as LLM-ready markdown.

    Sections: Recent Actions (episodic), Decisions Made, Errors (session-type errors),
    Other. With ``max_tokens`` the oldest lines are dropped until the estimate
    (characters / 4, rounded up) fits.
    """
    ctx = await svc.memories.session_context(principal.org_id, session_id, body or ContextRequest())
    return json_response(
        {"session_id": session_id, "context": ctx.text, "memory_count": ctx.memory_count}
        | ({"mode": ctx.mode} if ctx.mode else {})
    )
