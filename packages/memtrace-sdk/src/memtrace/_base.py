"""The sans-I/O core shared by the sync and async clients.

Each API operation is a function that returns a ``Call``: what to send and how to read
the answer. The clients only move bytes and sleep between retries.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from memtrace import exceptions as exc

T = TypeVar("T")
M = TypeVar("M", bound=pydantic.BaseModel)

DEFAULT_BASE_URL = "http://localhost:9100"
DEFAULT_TIMEOUT = 30.0
RETRY_STATUSES = frozenset({503})
MAX_RETRY_AFTER = 30.0


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP exchange, described without doing it.

    ``retry_safe`` says whether sending it twice is harmless. ``on_retried_conflict`` is
    sent instead when a retried create answers 409: the first attempt did store it.
    """

    method: str
    path: str
    parse: Callable[[Any], T]
    params: Mapping[str, Any] | None = None
    json: Any = None
    retry_safe: bool = True
    on_retried_conflict: Call[T] | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff for calls that are safe to repeat.

    Connection failures, timeouts and 503 answers are retried ``max_retries`` times,
    waiting ``backoff * 2**attempt`` seconds (or the server's ``Retry-After``).
    """

    max_retries: int = 2
    backoff: float = 0.25

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if response is not None:
            hint = _retry_after(response)
            if hint is not None:
                return min(hint, MAX_RETRY_AFTER)
        return float(self.backoff * (2**attempt))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def path_id(value: str) -> str:
    """A path segment, percent-encoded like memtrace-sdk 0.2.0 does."""
    return quote(value, safe="")


def coerce(model: type[M], value: M | Mapping[str, Any] | None, **overrides: Any) -> M:
    """``value`` as ``model``: a model instance, a plain dict, or None (all defaults)."""
    if isinstance(value, model) and not overrides:
        return value
    data: dict[str, Any] = {}
    if isinstance(value, pydantic.BaseModel):
        data = value.model_dump(exclude_unset=True)
    elif value is not None:
        data = dict(value)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as error:
        raise exc.ValidationError(
            f"invalid {model.__name__}: {error.errors()[0]['msg']} "
            f"({'.'.join(str(p) for p in error.errors()[0]['loc'])})",
            status_code=0,
        ) from error


def body(model: pydantic.BaseModel) -> dict[str, Any]:
    """A request model as a JSON body, without unset or None fields."""
    return model.model_dump(mode="json", exclude_none=True)


def error_for(response: httpx.Response) -> exc.MemtraceError:
    """The typed error for a response of status 400 or more."""
    message = ""
    try:
        payload = response.json()
        if isinstance(payload, dict):
            message = str(payload.get("error") or "")
    except ValueError:
        message = response.text.strip()
    status = response.status_code
    message = message or f"HTTP {status}"
    if status in (400, 422):
        return exc.ValidationError(message, status_code=status)
    if status == 401:
        return exc.AuthenticationError(message)
    if status == 403:
        return exc.PermissionDeniedError(message)
    if status == 404:
        return exc.NotFoundError(message)
    if status == 409:
        return exc.ConflictError(message)
    if status == 413:
        return exc.PayloadTooLargeError(message)
    if status == 429:
        return exc.RateLimitError(message, retry_after=_retry_after(response))
    if status == 503:
        return exc.ServiceUnavailableError(message)
    return exc.MemtraceError(message, status_code=status)


def transport_error(error: httpx.TransportError) -> exc.MemtraceConnectionError:
    """A transport failure wrapped in the SDK's own error."""
    if isinstance(error, httpx.TimeoutException):
        return exc.MemtraceTimeoutError(f"request timed out: {error}")
    return exc.MemtraceConnectionError(f"connection failed: {error}")


def decode(call: Call[T], response: httpx.Response) -> T:
    """Parse a successful response with the call's parser."""
    if response.status_code == 204 or not response.content:
        return call.parse(None)
    try:
        data = response.json()
    except ValueError as error:
        raise exc.MemtraceError(
            f"unexpected non-JSON response: {response.text[:200]}", response.status_code
        ) from error
    try:
        return call.parse(data)
    except pydantic.ValidationError as error:
        raise exc.MemtraceError(
            f"unexpected response shape: {error}", response.status_code
        ) from error


class ClientBase:
    """Settings shared by both clients; no I/O happens here."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        retry_backoff: float = 0.25,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get("MEMTRACE_URL") or DEFAULT_BASE_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("MEMTRACE_API_KEY")
        if not key:
            raise exc.AuthenticationError("no API key: pass api_key or set MEMTRACE_API_KEY")
        self.api_key = key
        self.timeout = timeout
        self.retry = RetryPolicy(max_retries=max_retries, backoff=retry_backoff)
        self.headers = {"x-api-key": key, "Content-Type": "application/json", **(headers or {})}

    def _request_kwargs(self, call: Call[Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if call.params:
            kwargs["params"] = {k: v for k, v in call.params.items() if v is not None}
        if call.json is not None:
            kwargs["json"] = call.json
        return kwargs

    def _should_retry(self, call: Call[Any], attempt: int, status: int | None) -> bool:
        if attempt >= self.retry.max_retries or not call.retry_safe:
            return False
        return status is None or status in RETRY_STATUSES

    def _exchange(self, call: Call[T]) -> Generator[Send | Sleep, Outcome, T]:
        """The whole policy of one call, retries included, as a generator.

        It yields ``Send`` (the driver answers with the response or the transport
        error) and ``Sleep`` (the driver waits, then answers None), and returns the
        parsed result or raises the typed error.
        """
        attempt = 0
        while True:
            outcome = yield Send(call.method, self.base_url + call.path, self._request_kwargs(call))
            if not isinstance(outcome, (httpx.Response, httpx.TransportError)):
                raise TypeError(f"an httpx response was expected, not {type(outcome).__name__}")
            response = outcome if isinstance(outcome, httpx.Response) else None
            if isinstance(outcome, httpx.TransportError):
                if not self._should_retry(call, attempt, None):
                    raise transport_error(outcome) from outcome
            else:
                assert response is not None
                if response.status_code < 400:
                    return decode(call, response)
                failure = error_for(response)
                if attempt and isinstance(failure, exc.ConflictError) and call.on_retried_conflict:
                    return (yield from self._exchange(call.on_retried_conflict))
                if not self._should_retry(call, attempt, response.status_code):
                    raise failure
            yield Sleep(self.retry.delay(attempt, response))
            attempt += 1


@dataclass(frozen=True)
class Send:
    """Step of an exchange: send this request."""

    method: str
    url: str
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Sleep:
    """Step of an exchange: wait this many seconds."""

    seconds: float


Outcome = httpx.Response | httpx.TransportError | None
