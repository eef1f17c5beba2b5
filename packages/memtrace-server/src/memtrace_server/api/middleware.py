"""One pure ASGI middleware: request id, body limit, access log line, metrics, and the hot
routes served without FastAPI's per-request machinery (``api.fastpath``)."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memtrace_server.api.metrics import Metrics
from memtrace_server.logs import AccessLog

if TYPE_CHECKING:
    from memtrace_server.api.deps import Services
    from memtrace_server.api.fastpath import FastRoutes

access_log = logging.getLogger("memtrace.access")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# A UTF-16 surrogate encoded as if it were a character (CESU-8): not UTF-8, yet the JSON
# parsers let it into a string, where encoding it again fails deep in a handler.
_ENCODED_SURROGATE_RE = re.compile(rb"\xed[\xa0-\xbf]")
# A JSON \u escape of a UTF-16 surrogate, with the escape that follows it, if any.
_SURROGATE_RE = re.compile(
    rb"\\u[dD]([89abAB])[0-9a-fA-F]{2}(\\u[dD][c-fC-F][0-9a-fA-F]{2})?|\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


class RequestMiddleware:
    """Wraps every HTTP request.

    The body is read up front (at most ``max_body_bytes``) so an oversized one gets a
    JSON 413 before any handler runs. Logs carry method, path, status, latency and
    request id — never headers, query strings or bodies, which may hold keys or content.
    With ``fast`` (the hot routes and the services they run on), a request for a hot route
    is answered here; every other goes on to FastAPI.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        metrics: Metrics,
        fast: tuple[FastRoutes, Services] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.fast = fast
        self.access = AccessLog(access_log)
        # Request ids: a random prefix per app and a counter, unique without a syscall each.
        self._id_prefix = os.urandom(8).hex()
        self._ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope) or f"{self._id_prefix}{next(self._ids):08x}"
        api = _app_path(scope).startswith("/api/")
        hot = self.fast[0].match(scope) if api and self.fast is not None else None
        if api and hot is None:
            _treat_body_as_json(scope)
        template: str | None = None
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            body_receive, body, whole = await self._buffer_body(scope, receive)
            if body_receive is None:
                await _send_json(
                    send_wrapper,
                    413,
                    {"error": f"request body too large: the limit is {self.max_body_bytes} bytes"},
                )
            elif api and _has_lone_surrogate(body):
                await _send_json(
                    send_wrapper,
                    400,
                    {"error": "invalid request body: a string holds an unpaired UTF-16 surrogate"},
                )
            elif api and _ENCODED_SURROGATE_RE.search(body):
                await _send_json(
                    send_wrapper,
                    400,
                    {"error": "invalid request body: not UTF-8 (a UTF-16 surrogate's bytes)"},
                )
            elif api and b"\\u0000" in body:
                await _send_json(
                    send_wrapper,
                    400,
                    {"error": "invalid request body: strings must not contain NUL characters"},
                )
            elif hot is not None and whole and self.fast is not None:
                route, path_params = hot
                template = route.template
                response = await route.respond(self.fast[1], scope, body, path_params)
                await response(scope, body_receive, send_wrapper)
            else:
                if hot is not None:  # the client left mid-body: FastAPI says what it says
                    _treat_body_as_json(scope)
                await self.app(scope, body_receive, send_wrapper)
        except Exception:
            access_log.exception("unhandled error", extra={"request_id": request_id})
            if not response_started:
                await _send_json(send_wrapper, 500, {"error": "internal server error"})
        finally:
            elapsed = time.perf_counter() - started
            if template is None:
                template = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.observe_request(method, template, status, elapsed)
            self.access.request(request_id, method, scope["path"], status, round(elapsed * 1000, 3))

    async def _buffer_body(
        self, scope: Scope, receive: Receive
    ) -> tuple[Receive | None, bytes, bool]:
        """Read the whole body: a receive replaying it, the body, and False when the client
        disconnected before sending all of it; (None, b"", False) if it exceeds the limit."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    if int(value) > self.max_body_bytes:
                        return None, b"", False
                except ValueError:
                    pass
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _replay(b"", disconnected=True, receive=receive), b"", False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None, b"", False
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        return _replay(body, disconnected=False, receive=receive), body, True


def _replay(body: bytes, *, disconnected: bool, receive: Receive) -> Receive:
    sent = disconnected

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _has_lone_surrogate(body: bytes) -> bool:
    """True when a JSON string escapes half of a surrogate pair: it cannot become UTF-8."""
    if b"\\u" not in body:
        return False
    for match in _SURROGATE_RE.finditer(body):
        if match.group(1) is None or match.group(2) is None:
            return True
    return False


def _app_path(scope: Scope) -> str:
    """The path within the app: without the prefix it is mounted under, if any."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _treat_body_as_json(scope: Scope) -> None:
    """Every API body is JSON, whatever Content-Type a client (say, bare curl) sent."""
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    scope["headers"] = headers


def _request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = str(value.decode("latin-1"))
            if _REQUEST_ID_RE.match(text):
                return text
    return None


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            # in the order of Starlette's responses, so this answer and FastAPI's match
            "headers": [
                (b"content-length", str(len(payload)).encode()),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
