"""Every error leaves the server as ``{"error": message}`` with a fitting status."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from memtrace_server.api.responses import json_response
from memtrace_server.core.errors import ApiError
from memtrace_server.core.requests import CUSTOM_ERROR
from memtrace_server.storage.base import StoreError

log = logging.getLogger("memtrace.api")


def _path(loc: Sequence[Any]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    # Drop the union tag the single/batch discriminator adds.
    parts = [p for p in parts if p not in ("single", "batch")]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validation_message(errors: Sequence[Any]) -> str:
    """One readable sentence for the first pydantic error."""
    if not errors:
        return "invalid request"
    first = errors[0]
    path = _path(first.get("loc", ()))
    kind = first.get("type", "")
    message = str(first.get("msg", "invalid value"))
    if kind == CUSTOM_ERROR:
        prefix = path[: path.rindex("]") + 1] if "]" in path else ""
        return f"{prefix}: {message}" if prefix else message
    if kind == "json_invalid":
        return f"invalid request body: {first.get('ctx', {}).get('error', message)}"
    if not path:
        return f"invalid request body: {message}"
    if kind == "missing":
        return f"{path} is required"
    return f"invalid {path}: {message}"


def api_error_response(exc: ApiError) -> Response:
    """The response for one of the server's own errors (``Retry-After`` on a 429)."""
    if isinstance(exc, StoreError):
        log.error("store failed (%d): %s", exc.status, exc)
    response = json_response(exc.body(), exc.status)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        response.headers["retry-after"] = str(retry_after)
    return response


def invalid_response(errors: Sequence[Any]) -> Response:
    """The 400 for request validation errors (FastAPI would answer 422)."""
    return json_response({"error": validation_message(errors)}, 400)


def http_error_response(
    status: int, detail: Any, headers: Mapping[str, str] | None = None
) -> Response:
    """The response for a Starlette ``HTTPException`` (unknown path, wrong method…), with
    its headers (``Allow`` on a 405)."""
    text = detail if isinstance(detail, str) else "request failed"
    if status == 404:
        text = "not found"
    response = json_response({"error": text.lower()}, status)
    response.headers.update(headers or {})
    return response


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the same body shape."""

    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return api_error_response(exc)

    async def invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return invalid_response(exc.errors())

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return http_error_response(exc.status_code, exc.detail, exc.headers)

    async def unhandled(_: Request, exc: Exception) -> Response:
        # Starlette's last-resort 500 (its own would be plain text); it raises the error
        # on afterwards, and ``RequestMiddleware`` logs it.
        return json_response({"error": "internal server error"}, 500)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unhandled)
