"""The hot routes without FastAPI's per-request machinery.

FastAPI declares every route, generates the OpenAPI document from those declarations and
serves most requests. For the routes called most often (memory create, list and get,
search, a session's or an agent's memories and context, agent stats) its routing through
nested routers, its dependency solving and its ``Request`` objects cost more than the work
itself, so ``RequestMiddleware`` serves them straight from a table built here, by calling
the very same route functions.

Nothing about a route is written twice: at start-up each hot route's signature is read once
(the way FastAPI reads it, for the few kinds of parameter these routes use) into a plan, and
a request then runs the plan in FastAPI's order: the JSON body is decoded first (a decode
error is a 400 before authentication), then the dependencies in declaration order (the
key, rate limit and permission; query parameters), then the route's own path and query
parameters, then body validation. The errors are FastAPI's, rendered by ``api.errors`` as
its exception handlers render them, and the response is the route's own.

A body is decoded by ``json.loads`` and validated as a Python value, as FastAPI does both:
``TypeAdapter.validate_json`` was measured no faster on a memory (its single-or-batch
discriminator needs the Python value anyway), twice as slow on a batch of 1,000, and
words some errors differently; orjson would save about 2 µs and accept some bodies
``json.loads`` refuses (nesting near the recursion limit).
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import params
from fastapi.routing import APIRoute, APIRouter
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

from memtrace_server.api.deps import PERMISSIONS, Services, authorize, services
from memtrace_server.api.errors import api_error_response, http_error_response, invalid_response
from memtrace_server.api.routes import agents, memories, sessions
from memtrace_server.core.errors import ApiError

Endpoint = Callable[..., Awaitable[Response]]

# The routes served by the fast path, by their route function.
HOT_ENDPOINTS: tuple[Endpoint, ...] = (
    memories.create_memories,
    memories.list_memories,
    memories.get_memory,
    memories.search,
    sessions.session_memories,
    sessions.session_context,
    agents.agent_memories,
    agents.agent_context,
    agents.agent_stats,
)
HOT_ROUTERS: tuple[APIRouter, ...] = (memories.router, sessions.router, agents.router)

_IMMUTABLE = (type(None), str, int, float, bool)
_ABSENT = object()  # an empty body
# FastAPI's words for a missing or undecodable body.
_MISSING_BODY = {"type": "missing", "loc": ("body",), "msg": "Field required"}
_UNPARSABLE_BODY = "There was an error parsing the body"


class _Invalid(Exception):
    """Validation errors, FastAPI-shaped (``loc`` starts with body, query or path)."""

    def __init__(self, errors: list[Any]) -> None:
        super().__init__("invalid request")
        self.errors = errors


class _Call:
    """What one request brings to a plan's dependencies: the services and the scope."""

    __slots__ = ("_query", "scope", "svc")

    def __init__(self, svc: Services, scope: Scope) -> None:
        self.svc = svc
        self.scope = scope
        self._query: QueryParams | None = None

    @property
    def query(self) -> QueryParams:
        """The query string, parsed as Starlette parses it (the last of repeated names)."""
        if self._query is None:
            self._query = QueryParams(self.scope["query_string"])
        return self._query

    def key_headers(self) -> tuple[str | None, str | None]:
        """The first ``x-api-key`` (None when empty) and ``authorization`` headers."""
        x_api_key = authorization = None
        for name, value in self.scope["headers"]:
            if name == b"x-api-key" and x_api_key is None:
                x_api_key = value.decode("latin-1")
            elif name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
        return x_api_key or None, authorization


@dataclass(frozen=True)
class _Query:
    """One query parameter, validated alone as FastAPI validates it (lax, its constraints)."""

    name: str
    alias: str
    adapter: TypeAdapter[Any]
    default: Any
    required: bool

    def read(self, query: QueryParams, values: dict[str, Any], errors: list[Any]) -> None:
        raw = query.get(self.alias)
        if raw is None:
            if self.required:
                errors.append(
                    {"type": "missing", "loc": ("query", self.alias), "msg": "Field required"}
                )
            else:
                values[self.name] = self.default
            return
        try:
            values[self.name] = self.adapter.validate_python(raw, from_attributes=True)
        except ValidationError as exc:
            errors.extend(
                {**e, "loc": ("query", self.alias, *e["loc"])}
                for e in exc.errors(include_url=False)
            )


@dataclass(frozen=True)
class _Body:
    """The JSON body parameter, decoded and validated as FastAPI does both."""

    name: str
    adapter: TypeAdapter[Any]
    required: bool

    def decode(self, raw: bytes) -> Any:
        """Before the dependencies: the body's JSON value (``_ABSENT`` for an empty body);
        an undecodable body is a 400 here, before the key is looked at, as in FastAPI."""
        if not raw:
            return _ABSENT
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _Invalid(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", exc.pos),
                        "msg": "JSON decode error",
                        "ctx": {"error": exc.msg},
                    }
                ]
            ) from exc
        except Exception as exc:  # not UTF-8, UTF-16 or UTF-32; nested too deep
            raise HTTPException(400, _UNPARSABLE_BODY) from exc

    def validate(self, decoded: Any, values: dict[str, Any], errors: list[Any]) -> None:
        """After the dependencies: the validated body, or its errors."""
        if decoded is _ABSENT:
            if self.required:
                errors.append(_MISSING_BODY)
            else:
                values[self.name] = None
            return
        try:
            values[self.name] = self.adapter.validate_python(decoded, from_attributes=True)
        except ValidationError as exc:
            errors.extend({**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False))


@dataclass(frozen=True)
class _Dependency:
    """A ``Depends`` parameter: the services, a principal with a permission, or a function
    of query parameters."""

    name: str
    permission: str | None = None
    call: Callable[..., Any] | None = None
    query: tuple[_Query, ...] = ()

    async def resolve(self, call: _Call, values: dict[str, Any], errors: list[Any]) -> None:
        if self.permission is not None:
            x_api_key, authorization = call.key_headers()
            values[self.name] = await authorize(call.svc, x_api_key, authorization, self.permission)
        elif self.call is None:
            values[self.name] = call.svc
        else:
            found: dict[str, Any] = {}
            failed: list[Any] = []
            for param in self.query:
                param.read(call.query, found, failed)
            if failed:  # as FastAPI does: the function is not called, its errors are kept
                errors.extend(failed)
                return
            result = self.call(**found)
            values[self.name] = await result if inspect.isawaitable(result) else result


class FastRoute:
    """One hot route: its template (the metrics label) and the plan of its parameters."""

    def __init__(self, route: APIRoute) -> None:
        self.template = route.path
        self.methods = frozenset(route.methods or ())
        self.endpoint: Endpoint = route.endpoint
        self.path_regex = route.path_regex
        self.convertors = route.param_convertors
        self.dependencies: list[_Dependency] = []
        self.path_names: list[str] = []
        self.query: list[_Query] = []
        self.body: _Body | None = None
        hints = typing.get_type_hints(self.endpoint, include_extras=True)
        for param in inspect.signature(self.endpoint).parameters.values():
            self._plan(param, hints.get(param.name, Any))

    def _plan(self, param: inspect.Parameter, hint: Any) -> None:
        default = param.default
        if isinstance(default, params.Depends):
            self.dependencies.append(_dependency(param.name, default.dependency))
        elif isinstance(default, params.Query):
            self.query.append(_query(param.name, hint, default))
        elif typing.get_origin(hint) is Annotated and any(
            isinstance(m, params.Body) for m in hint.__metadata__
        ):
            self.body = _body(param.name, hint, required=default is inspect.Parameter.empty)
        elif param.name in self.convertors and hint is str:
            self.path_names.append(param.name)
        else:
            raise TypeError(f"{self.template}: no fast path for parameter {param.name!r}")

    async def respond(
        self, svc: Services, scope: Scope, raw: bytes, path_params: dict[str, Any]
    ) -> Response:
        """The route's response to this request, or the error response FastAPI would send."""
        try:
            return await self._respond(svc, scope, raw, path_params)
        except ApiError as exc:
            return api_error_response(exc)
        except _Invalid as exc:
            return invalid_response(exc.errors)
        except HTTPException as exc:
            return http_error_response(exc.status_code, exc.detail)

    async def _respond(
        self, svc: Services, scope: Scope, raw: bytes, path_params: dict[str, Any]
    ) -> Response:
        decoded = self.body.decode(raw) if self.body is not None else _ABSENT
        call = _Call(svc, scope)
        values: dict[str, Any] = {}
        errors: list[Any] = []
        for dependency in self.dependencies:
            await dependency.resolve(call, values, errors)
        for name in self.path_names:
            values[name] = path_params[name]
        for param in self.query:
            param.read(call.query, values, errors)
        if self.body is not None:
            self.body.validate(decoded, values, errors)
        if errors:
            raise _Invalid(errors)
        return await self.endpoint(**values)


class FastRoutes:
    """The table of hot routes: ``match`` finds the route of a request, if it is one."""

    def __init__(self, routes: Iterable[FastRoute]) -> None:
        self.routes = tuple(routes)
        self._static: dict[tuple[str, str], FastRoute] = {}
        self._templated: dict[str, list[FastRoute]] = {}
        for route in self.routes:
            for method in route.methods:
                if route.convertors:
                    self._templated.setdefault(method, []).append(route)
                else:
                    self._static[method, route.template] = route

    def match(self, scope: Scope) -> tuple[FastRoute, dict[str, Any]] | None:
        """The hot route and path parameters of this HTTP request, or None."""
        if scope.get("root_path"):  # mounted under a prefix: FastAPI's routing knows how
            return None
        if getattr(scope.get("app"), "dependency_overrides", None):  # tests that override
            return None
        method, path = scope["method"], scope["path"]
        route = self._static.get((method, path))
        if route is not None:
            return route, {}
        for route in self._templated.get(method, ()):
            found = route.path_regex.match(path)
            if found is not None:
                return route, {
                    name: route.convertors[name].convert(value)
                    for name, value in found.groupdict().items()
                }
        return None


def hot_routes(
    routers: Iterable[APIRouter] = HOT_ROUTERS, endpoints: Iterable[Endpoint] = HOT_ENDPOINTS
) -> FastRoutes:
    """The table of the hot routes, planned from their FastAPI declarations."""
    wanted = set(endpoints)
    found = [
        FastRoute(route)
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and route.endpoint in wanted
    ]
    missing = wanted - {route.endpoint for route in found}
    if missing:
        raise LookupError(f"hot routes not declared: {sorted(e.__name__ for e in missing)}")
    return FastRoutes(found)


def _dependency(name: str, dependency: Any) -> _Dependency:
    if dependency is services:
        return _Dependency(name)
    if dependency in PERMISSIONS:
        return _Dependency(name, permission=PERMISSIONS[dependency])
    hints = typing.get_type_hints(dependency, include_extras=True)
    query = []
    for param in inspect.signature(dependency).parameters.values():
        if not isinstance(param.default, params.Query):
            raise TypeError(f"no fast path for dependency {dependency!r}: {param.name!r}")
        query.append(_query(param.name, hints.get(param.name, Any), param.default))
    return _Dependency(name, call=dependency, query=tuple(query))


def _query(name: str, hint: Any, info: params.Query) -> _Query:
    default = info.default
    required = info.is_required()
    if typing.get_origin(hint) in (list, tuple, set, frozenset) or not (
        required or isinstance(default, _IMMUTABLE)
    ):
        raise TypeError(f"no fast path for query parameter {name!r}")
    adapter = TypeAdapter[Any](_annotated(hint, info.metadata))
    return _Query(name, info.alias or name, adapter, default, required)


def _body(name: str, hint: Any, *, required: bool) -> _Body:
    inner, *metadata = typing.get_args(hint)
    kept = [m for m in metadata if not isinstance(m, params.Body)]
    return _Body(name, TypeAdapter[Any](_annotated(inner, kept)), required)


def _annotated(base: Any, metadata: Sequence[Any]) -> Any:
    """``Annotated[base, *metadata]``, or ``base`` without metadata (Python 3.10 has no
    star in a subscript)."""
    if not metadata:
        return base
    args = (base, *metadata)
    return Annotated[args]
