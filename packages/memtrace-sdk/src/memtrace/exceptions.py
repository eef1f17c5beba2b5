"""Errors raised by the Memtrace clients.

Every error is a ``MemtraceError`` with ``.message`` and ``.status_code`` (0 when no
HTTP response arrived). The names and constructors of memtrace-sdk 0.2.0 are kept.
"""

from __future__ import annotations


class MemtraceError(Exception):
    """Base of every Memtrace error."""

    def __init__(self, message: str, status_code: int = 0) -> None:
        self.message = message
        self.status_code = status_code
        super().__init__(message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status_code={self.status_code})"


class ValidationError(MemtraceError):
    """The server refused the input (400 or 422)."""

    def __init__(self, message: str = "Invalid request", status_code: int = 400) -> None:
        super().__init__(message, status_code=status_code)


class AuthenticationError(MemtraceError):
    """The API key is missing, unknown or revoked (401)."""

    def __init__(self, message: str = "Invalid or missing API key") -> None:
        super().__init__(message, status_code=401)


class PermissionDeniedError(MemtraceError):
    """The API key lacks the permission the call needs (403)."""

    def __init__(self, message: str = "Permission denied") -> None:
        super().__init__(message, status_code=403)


class NotFoundError(MemtraceError):
    """The memory, agent or session does not exist in your organisation (404)."""

    def __init__(self, message: str = "Resource not found") -> None:
        super().__init__(message, status_code=404)


class ConflictError(MemtraceError):
    """A duplicate memory, or an agent name already taken (409)."""

    def __init__(self, message: str = "Conflict") -> None:
        super().__init__(message, status_code=409)


class PayloadTooLargeError(MemtraceError):
    """The request body or batch exceeds the server's limit (413)."""

    def __init__(self, message: str = "Payload too large") -> None:
        super().__init__(message, status_code=413)


class RateLimitError(MemtraceError):
    """Too many requests (429); ``retry_after`` is the server's hint in seconds."""

    def __init__(self, message: str = "Rate limited", retry_after: float | None = None) -> None:
        super().__init__(message, status_code=429)
        self.retry_after = retry_after


class ServiceUnavailableError(MemtraceError):
    """The server cannot serve the request right now (503)."""

    def __init__(self, message: str = "Service unavailable") -> None:
        super().__init__(message, status_code=503)


# memtrace-sdk 0.2.0 raised this for a 503 about a missing Arc backend; every 503 is
# the same condition here (the org's store is unavailable), so the name is kept as an alias.
NoArcInstanceError = ServiceUnavailableError


class MemtraceConnectionError(MemtraceError):
    """No HTTP response: the connection failed or was refused (status_code 0)."""

    def __init__(self, message: str = "Connection failed") -> None:
        super().__init__(message, status_code=0)


class MemtraceTimeoutError(MemtraceConnectionError):
    """The request timed out."""
