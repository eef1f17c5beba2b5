"""``GET /api/v1/export``: an organisation's data as streamed JSON Lines."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from starlette.responses import StreamingResponse

from memtrace_server.api.deps import Services, administrator, services
from memtrace_server.api.schemas import errors
from memtrace_server.service.auth import Principal

router = APIRouter(prefix="/api/v1", tags=["export"])


@router.get(
    "/export",
    summary="Export as JSON Lines",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}}, "description": "One JSON object per line"},
        **errors(401, 403, 503),
    },
)
async def export(
    agent_id: str | None = Query(None, description="Only this agent (id or name) and its data."),
    principal: Principal = Depends(administrator),
    svc: Services = Depends(services),
) -> StreamingResponse:
    """Agents, sessions and memories of the caller's org, one JSON object per line.

    Each line has ``kind`` (agent, session, memory) and the API's fields. Needs a key with
    the ``admin`` permission. ``memtrace import`` reads the same format.
    """
    return StreamingResponse(
        svc.transfer.export(principal.org_id, agent_id), media_type="application/x-ndjson"
    )
