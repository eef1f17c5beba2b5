"""Request dependencies: the services and the authenticated principal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from memtrace_server.api.metrics import Metrics
from memtrace_server.config import Settings
from memtrace_server.service.agents import Agents
from memtrace_server.service.auth import Authenticator, Principal, key_from_headers
from memtrace_server.service.memories import Memories
from memtrace_server.service.ratelimit import RateLimiter
from memtrace_server.service.transfer import Transfer
from memtrace_server.storage.routing import Stores

api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="API key (mtk_…).")
bearer = HTTPBearer(auto_error=False, description="API key as a bearer token.")


@dataclass(frozen=True)
class Services:
    """Everything a route needs, built once per app."""

    settings: Settings
    stores: Stores
    auth: Authenticator
    limiter: RateLimiter
    memories: Memories
    agents: Agents
    transfer: Transfer
    metrics: Metrics


async def services(request: Request) -> Services:
    """The app's services (async: FastAPI runs plain-function dependencies in a thread)."""
    return services_of(request)


def services_of(request: Request) -> Services:
    """The app's services, for code that has the request at hand."""
    found: Services = request.app.state.services
    return found


async def authorize(
    svc: Services, x_api_key: str | None, authorization: str | None, permission: str
) -> Principal:
    """Who the request acts as: the key authenticated (401), its rate limit spent (429) and
    ``permission`` checked (403), in that order."""
    principal = await svc.auth.authenticate(key_from_headers(x_api_key, authorization))
    svc.limiter.take(principal.key_id or principal.org_id)
    principal.require(permission)
    return principal


def require(permission: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the request and checks ``permission``."""

    async def dependency(
        request: Request,
        x_api_key: str | None = Security(api_key_header),
        _bearer: object = Security(bearer),
    ) -> Principal:
        return await authorize(
            services_of(request), x_api_key, request.headers.get("authorization"), permission
        )

    return dependency


reader = require("read")
writer = require("write")
administrator = require("admin")
# What each of these dependencies requires, for the routes served without FastAPI.
PERMISSIONS: dict[Callable[..., Awaitable[Principal]], str] = {
    reader: "read",
    writer: "write",
    administrator: "admin",
}
