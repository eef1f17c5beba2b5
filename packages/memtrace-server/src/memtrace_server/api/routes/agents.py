"""``/api/v1/agents``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query
from starlette.responses import Response

from memtrace_server.api.deps import Services, reader, services, writer
from memtrace_server.api.responses import json_response
from memtrace_server.api.routes.memories import TIME_HELP, PageQuery, page_query, page_response
from memtrace_server.api.schemas import (
    AgentContextOut,
    AgentListOut,
    AgentOut,
    AgentStatsOut,
    MemoryListOut,
    errors,
)
from memtrace_server.core.requests import (
    ContextRequest,
    RegisterAgentRequest,
    UpdateAgentRequest,
)
from memtrace_server.core.validation import check_id
from memtrace_server.core.wire import agent_to_wire, stats_to_wire
from memtrace_server.service.auth import Principal

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])


@router.post(
    "",
    status_code=201,
    summary="Register an agent",
    responses={201: {"model": AgentOut}, **errors(400, 401, 403, 409, 503)},
)
async def register_agent(
    body: Annotated[RegisterAgentRequest, Body()],
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> Response:
    """Register an agent under a name unique in the org (409 when taken)."""
    return json_response(agent_to_wire(await svc.agents.register(principal.org_id, body)), 201)


@router.get(
    "",
    summary="List agents",
    responses={200: {"model": AgentListOut}, **errors(401, 403, 503)},
)
async def list_agents(
    principal: Principal = Depends(reader), svc: Services = Depends(services)
) -> Response:
    """All agents of the org, newest first."""
    agents = await svc.agents.list_agents(principal.org_id)
    return json_response({"agents": [agent_to_wire(a) for a in agents], "count": len(agents)})


@router.get(
    "/{agent_id}",
    summary="Get an agent",
    responses={200: {"model": AgentOut}, **errors(400, 401, 403, 404, 503)},
)
async def get_agent(
    agent_id: str, principal: Principal = Depends(reader), svc: Services = Depends(services)
) -> Response:
    """An agent by id or name."""
    return json_response(agent_to_wire(await svc.agents.get(principal.org_id, agent_id)))


@router.delete(
    "/{agent_id}",
    status_code=204,
    summary="Delete an agent",
    responses={204: {"description": "Deleted"}, **errors(400, 401, 403, 404, 409, 503)},
)
async def delete_agent(
    agent_id: str,
    cascade: bool = Query(False, description="Also erase its sessions and all its memories."),
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> Response:
    """Delete an agent by id or name.

    Without ``cascade`` it must have no sessions (409) and its memories stay; with
    ``cascade=true`` its sessions and every memory under its id or name are erased too.
    """
    await svc.agents.delete(principal.org_id, agent_id, cascade=cascade)
    return Response(status_code=204)


@router.patch(
    "/{agent_id}",
    summary="Update an agent",
    responses={200: {"model": AgentOut}, **errors(400, 401, 403, 404, 503)},
)
async def update_agent(
    agent_id: str,
    body: Annotated[UpdateAgentRequest, Body()],
    principal: Principal = Depends(writer),
    svc: Services = Depends(services),
) -> Response:
    """Replace the description and merge keys into the config (null removes a key)."""
    return json_response(agent_to_wire(await svc.agents.update(principal.org_id, agent_id, body)))


@router.get(
    "/{agent_id}/stats",
    summary="Agent statistics",
    responses={200: {"model": AgentStatsOut}, **errors(400, 401, 403, 503)},
)
async def agent_stats(
    agent_id: str, principal: Principal = Depends(reader), svc: Services = Depends(services)
) -> Response:
    """Memory counts (all time, last 24 h, errors) and session counts for an agent id."""
    stats = await svc.agents.stats(principal.org_id, agent_id)
    return json_response(stats_to_wire(agent_id, stats))


@router.get(
    "/{agent_id}/memories",
    summary="Memories of an agent",
    responses={200: {"model": MemoryListOut}, **errors(400, 401, 403, 503)},
)
async def agent_memories(
    agent_id: str,
    session_id: str | None = Query(None, description="Exact session id."),
    since: str = Query("24h", description=TIME_HELP + " Default 24h."),
    page: PageQuery = Depends(page_query),
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> Response:
    """Memories written under this agent id, from the last 24 hours by default."""
    flt = page.filter(agent_id=check_id("agent_id", agent_id), session_id=session_id, since=since)
    return page_response(await svc.memories.page(principal.org_id, flt))


@router.post(
    "/{agent_id}/context",
    summary="Agent context as markdown",
    responses={200: {"model": AgentContextOut}, **errors(400, 401, 403, 503)},
)
async def agent_context(
    agent_id: str,
    body: Annotated[ContextRequest | None, Body()] = None,
    principal: Principal = Depends(reader),
    svc: Services = Depends(services),
) -> Response:
    """An agent's memories of the window across all its sessions (default 24 h, newest 100).

    Same sections and ``max_tokens`` budget as the session context, under
    ``## Agent Context (<agent_id>)``: what to give a new session of the same agent.
    """
    ctx = await svc.memories.agent_context(principal.org_id, agent_id, body or ContextRequest())
    return json_response(
        {"agent_id": agent_id, "context": ctx.text, "memory_count": ctx.memory_count}
        | ({"mode": ctx.mode} if ctx.mode else {})
    )
