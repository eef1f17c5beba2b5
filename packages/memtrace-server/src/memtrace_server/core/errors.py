"""The root of the server's own errors: each carries its HTTP status and renders as
``{"error": message, ...}``. Storage errors (``storage.base``) derive from it too."""

from __future__ import annotations

from typing import Any, ClassVar


class ApiError(Exception):
    """Root of every error the server raises on purpose, whatever the layer.

    ``extra`` holds optional fields (``hint``, ``code``) added to the JSON body.
    """

    status: ClassVar[int] = 500

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body sent to the client."""
        return {"error": self.message, **self.extra}

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt as it is, not through ``__init__`` (a subclass's may reword the message):
        # the SQLite store's ingest process sends its errors to the server this way.
        return _restored, (type(self), self.args, dict(self.__dict__))


def _restored(kind: type[ApiError], args: tuple[Any, ...], state: dict[str, Any]) -> ApiError:
    error = kind.__new__(kind)
    error.args = args
    error.__dict__.update(state)
    return error


class BadRequest(ApiError):
    """The request is malformed or a value is out of range (400)."""

    status = 400


class Unauthorized(ApiError):
    """No API key, or one that is unknown or revoked (401)."""

    status = 401


class Forbidden(ApiError):
    """The key is valid but lacks the permission the route needs (403)."""

    status = 403


class NotFound(ApiError):
    """The addressed object does not exist in the caller's organisation (404)."""

    status = 404


class Conflict(ApiError):
    """A duplicate memory or an agent name already taken (409)."""

    status = 409


class PayloadTooLarge(ApiError):
    """The request body exceeds the configured limit (413)."""

    status = 413


class RateLimited(ApiError):
    """Too many requests for this key (429); ``retry_after`` seconds until a token is back."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
