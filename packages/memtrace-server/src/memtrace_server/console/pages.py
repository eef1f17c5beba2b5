"""The console's pages: sign-in, overview, memories, agents, sessions, bulk erase and keys.

Every page reads through the services the REST API uses, with the signed-in key's org and
permissions; a change needs the key's permission and the session's CSRF token.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from memtrace_server.console.charts import daily_chart
from memtrace_server.console.services import ConsoleServices
from memtrace_server.console.web import (
    COOKIE,
    LOGIN_COOKIE,
    PREFIX,
    ConsoleRoute,
    SignInRequired,
    check_csrf,
    clear_session_cookie,
    form_of,
    login_token_matches,
    render,
    set_session_cookie,
    sign_in_page,
)
from memtrace_server.core.context import estimate_tokens
from memtrace_server.core.errors import ApiError, BadRequest, NotFound, Unauthorized
from memtrace_server.core.explain import Explanation
from memtrace_server.core.records import MEMORY_TYPES, PERMISSIONS, MemoryFilter, MemoryRecord
from memtrace_server.core.requests import ContextRequest, EraseRequest, SearchRequest
from memtrace_server.core.timefmt import now_ns
from memtrace_server.service.admin import AdminError
from memtrace_server.service.console_sessions import ConsoleUser
from memtrace_server.service.memories import list_filter

PAGE_SIZE = 50
AGENT_PAGE_SIZE = 25
FILTER_FIELDS = ("agent_id", "session_id", "memory_type", "event_type", "tags", "since", "until")
SEARCH_FIELDS = ("q", "mode", "recency_half_life", "importance_weight")
STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}


def services_of(request: Request) -> ConsoleServices:
    """The console's services, set on the app by its factory."""
    found: ConsoleServices = request.app.state.console
    return found


async def signed_in(request: Request) -> ConsoleUser:
    """The signed-in user, or SignInRequired (which redirects to the sign-in page)."""
    user = await services_of(request).sessions.resume(request.cookies.get(COOKIE))
    if user is None:
        raise SignInRequired
    request.state.console_user = user  # for the menu of an error page
    return user


async def reading(request: Request) -> tuple[ConsoleUser, ConsoleServices, str]:
    """The signed-in user, the services and the org every read is scoped to."""
    user = await signed_in(request)
    return user, services_of(request), user.principal.org_id


async def changing(request: Request, permission: str) -> tuple[ConsoleUser, dict[str, str]]:
    """The user and form of a request that changes something: permission, then CSRF token."""
    user = await signed_in(request)
    user.principal.require(permission)
    form = await form_of(request)
    check_csrf(user, form)
    return user, form


def _params(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    return {name: request.query_params.get(name, "").strip() for name in names}


def _int(value: str, field: str, default: int = 0) -> int:
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"invalid {field} '{value}': a whole number is needed") from None
    if number < 0 or number > 1_000_000:
        raise BadRequest(f"invalid {field} '{value}': must be 0 to 1000000")
    return number


def _float(value: str, field: str) -> float:
    if not value:
        return 0.0
    try:
        return float(value)
    except ValueError:
        raise BadRequest(f"invalid {field} '{value}': a number is needed") from None


def _validated(model: Any, **fields: Any) -> Any:
    """A request model built from form values; its first error as a 400."""
    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BadRequest(f"invalid {where}: {first.get('msg', 'invalid value')}") from None


def _body_filters(filters: dict[str, str]) -> dict[str, Any]:
    """The list filters of a form as the fields of a search or erase body."""
    return {
        "agent_id": filters["agent_id"],
        "session_id": filters["session_id"],
        "memory_types": [filters["memory_type"]] if filters["memory_type"] else [],
        "event_types": [filters["event_type"]] if filters["event_type"] else [],
        "tags": [t.strip() for t in filters["tags"].split(",") if t.strip()],
        "since": filters["since"],
        "until": filters["until"],
    }


def _search_request(
    filters: dict[str, str], search: dict[str, str], limit: int, offset: int
) -> SearchRequest:
    request: SearchRequest = _validated(
        SearchRequest,
        **_body_filters(filters),
        query=search["q"],
        mode=search["mode"] or "bm25",
        recency_half_life=search["recency_half_life"],
        importance_weight=_float(search["importance_weight"], "importance weight"),
        limit=limit,
        offset=offset,
        explain=True,
    )
    return request


def _page_links(request: Request, offset: int, has_more: bool, size: int) -> dict[str, str]:
    """Query strings of the newer and older pages (empty when there is none)."""
    kept = {k: v for k, v in request.query_params.items() if k != "offset" and v}
    newer = urlencode({**kept, "offset": max(offset - size, 0)}) if offset > 0 else ""
    older = urlencode({**kept, "offset": offset + size}) if has_more else ""
    return {"newer": newer, "older": older}


def build_router() -> APIRouter:
    """The console's routes, all under ``/ui`` and none in the OpenAPI document."""
    router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=ConsoleRoute)

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            raise NotFound("not found")
        body = (resources.files("memtrace_server.console") / "static" / name).read_bytes()
        response = Response(body, media_type=STATIC[name])
        response.headers["cache-control"] = "public, max-age=3600"
        return response

    @router.get("/sign-in")
    async def sign_in_form(request: Request) -> Response:
        return sign_in_page(
            request,
            next_path=_next_path(request.query_params.get("next")),
            secure=services_of(request).secure_cookie,
        )

    @router.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        svc = services_of(request)
        form = await form_of(request)
        target = _next_path(form.get("next"))
        if not login_token_matches(request, form):
            return sign_in_page(
                request,
                next_path=target,
                secure=svc.secure_cookie,
                status=403,
                error="The sign-in form expired or came from another site: sign in again.",
            )
        address = request.client.host if request.client else "unknown"
        try:
            signed = await svc.sessions.sign_in(form.get("api_key", ""), address)
        except Unauthorized:
            return sign_in_page(
                request,
                next_path=target,
                secure=svc.secure_cookie,
                status=401,
                error="That API key is not valid.",
            )
        response = RedirectResponse(target, status_code=303)
        set_session_cookie(response, request, signed.token, secure=svc.secure_cookie)
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX + "/")
        return response

    @router.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        user = await signed_in(request)
        check_csrf(user, await form_of(request))
        await services_of(request).sessions.sign_out(request.cookies.get(COOKIE))
        response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
        clear_session_cookie(response)
        return response

    @router.get("/")
    async def overview(request: Request) -> Response:
        user, svc, org = await reading(request)
        return render(
            request,
            "overview.html",
            user,
            totals=await svc.overview.totals(org),
            chart=daily_chart(await svc.overview.per_day(org)),
            active=await svc.overview.most_active(org),
        )

    @router.get("/memories")
    async def memories(request: Request) -> Response:
        user, svc, org = await reading(request)
        filters = _params(request, FILTER_FIELDS)
        search = _params(request, SEARCH_FIELDS)
        offset = _int(request.query_params.get("offset", ""), "offset")
        rows: list[tuple[MemoryRecord, Explanation | None]]
        if search["q"]:
            body = _search_request(filters, search, PAGE_SIZE + 1, offset)
            explained = await svc.memories.search_explained(org, body)
            has_more = len(explained) > PAGE_SIZE
            rows = list(explained[:PAGE_SIZE])
        else:
            given: dict[str, Any] = {k: v or None for k, v in filters.items()}
            flt = list_filter(now=now_ns(), limit=PAGE_SIZE, offset=offset, **given)
            page = await svc.memories.page(org, flt)
            has_more = page.has_more
            rows = [(m, None) for m in page.memories]
        return render(
            request,
            "memories.html",
            user,
            rows=rows,
            filters=filters,
            search=search,
            searched=bool(search["q"]),
            hybrid_available=svc.memories.embedder is not None,
            memory_types=MEMORY_TYPES,
            links=_page_links(request, offset, has_more, PAGE_SIZE),
            deleted=request.query_params.get("deleted", ""),
        )

    @router.get("/memories/{memory_id}")
    async def memory(request: Request, memory_id: str) -> Response:
        user, svc, org = await reading(request)
        found = await svc.memories.get(org, memory_id)
        before: list[Any] = []
        after: list[Any] = []
        if found.session_id:
            around = MemoryFilter(session_id=found.session_id, limit=3)
            before = (
                await svc.memories.page(org, replace(around, until_ns=found.time_ns))
            ).memories
            after = (
                await svc.memories.page(
                    org, replace(around, since_ns=found.time_ns, ascending=True)
                )
            ).memories
        return render(request, "memory.html", user, memory=found, before=before[::-1], after=after)

    @router.get("/memories/{memory_id}/delete")
    async def confirm_delete(request: Request, memory_id: str) -> Response:
        user = await signed_in(request)
        user.principal.require("write")
        found = await services_of(request).memories.get(user.principal.org_id, memory_id)
        return render(request, "delete.html", user, memory=found)

    @router.post("/memories/{memory_id}/delete")
    async def delete(request: Request, memory_id: str) -> Response:
        user, _ = await changing(request, "write")
        await services_of(request).memories.delete(user.principal.org_id, memory_id)
        return RedirectResponse(f"{PREFIX}/memories?deleted={memory_id}", status_code=303)

    @router.get("/agents")
    async def agents(request: Request) -> Response:
        user, svc, org = await reading(request)
        offset = _int(request.query_params.get("offset", ""), "offset")
        every = await svc.agents.list_agents(org)
        shown = every[offset : offset + AGENT_PAGE_SIZE]
        stats = [await svc.agents.stats(org, a.name) for a in shown]
        return render(
            request,
            "agents.html",
            user,
            agents=list(zip(shown, stats, strict=True)),
            total=len(every),
            links=_page_links(
                request, offset, offset + AGENT_PAGE_SIZE < len(every), AGENT_PAGE_SIZE
            ),
        )

    @router.get("/agents/{ref}")
    async def agent(request: Request, ref: str) -> Response:
        user, svc, org = await reading(request)
        found = await svc.agents.get(org, ref)
        # Like the API's /agents/{agent_id}/..., memories are those written under ``ref``.
        options = _params(request, ("since", "max_tokens", "query"))
        context = await svc.memories.agent_context(org, ref, _context_request(options))
        newest = await svc.memories.page(org, MemoryFilter(agent_id=ref, limit=10))
        return render(
            request,
            "agent.html",
            user,
            agent=found,
            ref=ref,
            other_ref=found.id if ref != found.id else found.name,
            stats=await svc.agents.stats(org, ref),
            chart=daily_chart(await svc.overview.per_day(org, ref)),
            sessions=(await svc.agents.list_sessions(org, found.id))[:50],
            newest=newest.memories,
            context=context,
            tokens=estimate_tokens(context.text),
            options=options,
        )

    @router.get("/sessions")
    async def sessions(request: Request) -> Response:
        user, svc, org = await reading(request)
        filters = _params(request, ("agent_id", "status"))
        offset = _int(request.query_params.get("offset", ""), "offset")
        every = await svc.agents.list_sessions(org, filters["agent_id"] or None)
        if filters["status"]:
            every = [s for s in every if s.status == filters["status"]]
        shown = every[offset : offset + PAGE_SIZE]
        return render(
            request,
            "sessions.html",
            user,
            sessions=shown,
            total=len(every),
            filters=filters,
            links=_page_links(request, offset, offset + PAGE_SIZE < len(every), PAGE_SIZE),
        )

    @router.get("/sessions/{session_id}")
    async def session(request: Request, session_id: str) -> Response:
        user, svc, org = await reading(request)
        found = await svc.agents.get_session(org, session_id)
        options = _params(request, ("since", "max_tokens", "query"))
        context = await svc.memories.session_context(org, found.id, _context_request(options))
        offset = _int(request.query_params.get("offset", ""), "offset")
        timeline = await svc.memories.page(
            org, MemoryFilter(session_id=found.id, ascending=True, limit=PAGE_SIZE, offset=offset)
        )
        return render(
            request,
            "session.html",
            user,
            session=found,
            timeline=timeline.memories,
            offset=offset,
            links=_page_links(request, offset, timeline.has_more, PAGE_SIZE),
            context=context,
            tokens=estimate_tokens(context.text),
            options=options,
        )

    @router.get("/erase")
    async def erase_form(request: Request) -> Response:
        user = await signed_in(request)
        user.principal.require("write")
        return render(
            request,
            "erase.html",
            user,
            filters=_params(request, FILTER_FIELDS),
            memory_types=MEMORY_TYPES,
            count=None,
            erased=None,
        )

    @router.post("/erase")
    async def erase(request: Request) -> Response:
        user, form = await changing(request, "write")
        filters = {name: form.get(name, "").strip() for name in FILTER_FIELDS}
        confirmed = form.get("confirm") == "yes"
        body = _validated(
            EraseRequest,
            **_body_filters(filters),
            dry_run=not confirmed,
        )
        count = await services_of(request).memories.erase(user.principal.org_id, body)
        return render(
            request,
            "erase.html",
            user,
            filters=filters,
            memory_types=MEMORY_TYPES,
            count=None if confirmed else count,
            erased=count if confirmed else None,
        )

    @router.get("/keys")
    async def keys(request: Request) -> Response:
        user = await signed_in(request)
        user.principal.require("admin")
        return await _keys_page(request, user)

    @router.post("/keys")
    async def create_key(request: Request) -> Response:
        user, form = await changing(request, "admin")
        permissions = ",".join(p for p in PERMISSIONS if form.get(f"perm_{p}"))
        try:
            key, record = await services_of(request).admin.create_key(
                user.principal.org_id, form.get("name", ""), permissions
            )
        except AdminError as exc:
            return await _keys_page(request, user, error=str(exc), status=400)
        return await _keys_page(request, user, new_key=key, new_key_name=record.name)

    @router.post("/keys/{key_id}/revoke")
    async def revoke_key(request: Request, key_id: int) -> Response:
        user, _ = await changing(request, "admin")
        try:
            await services_of(request).admin.revoke_key(key_id, user.principal.org_id)
        except AdminError:
            raise NotFound("key not found") from None
        return RedirectResponse(f"{PREFIX}/keys", status_code=303)

    @router.post("/retention")
    async def retention(request: Request) -> Response:
        user, form = await changing(request, "admin")
        days = _int(form.get("days", "").strip(), "days")
        if days > 36500:
            raise BadRequest("invalid days: at most 36500")
        await services_of(request).admin.set_retention(user.principal.org_id, days)
        return RedirectResponse(f"{PREFIX}/keys", status_code=303)

    @router.get("/export")
    async def export(request: Request) -> Response:
        user = await signed_in(request)
        user.principal.require("admin")
        org = user.principal.org_id
        return StreamingResponse(
            services_of(request).transfer.export(org),
            media_type="application/x-ndjson",
            headers={"content-disposition": f'attachment; filename="{org}.jsonl"'},
        )

    @router.get("/{rest:path}")
    async def unknown(request: Request, rest: str) -> Response:
        await signed_in(request)
        raise NotFound("page not found")

    return router


def _context_request(options: dict[str, str]) -> ContextRequest:
    request: ContextRequest = _validated(
        ContextRequest,
        since=options["since"],
        max_tokens=_int(options["max_tokens"], "max_tokens"),
        query=options["query"],
    )
    return request


def _next_path(value: str | None) -> str:
    """Where to go after signing in: a console path only, never another host."""
    if (
        value
        and value.startswith(PREFIX + "/")
        and not value.startswith("//")
        and "\\" not in value
    ):
        return value
    return PREFIX + "/"


async def _keys_page(
    request: Request, user: ConsoleUser, *, status: int = 200, **values: Any
) -> Response:
    svc = services_of(request)
    org = user.principal.org_id
    try:
        retention = await svc.admin.retention_days(org)
    except AdminError as exc:
        raise ApiError(str(exc)) from exc
    return render(
        request,
        "keys.html",
        user,
        status=status,
        keys=await svc.admin.list_keys(org),
        retention=retention,
        permissions=PERMISSIONS,
        **values,
    )
