"""Log setup: one JSON object (or one readable line) per record, on stderr."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from memtrace_server.turns import TurnBatch

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_second: tuple[int, str] = (-1, "")  # the last second formatted (one line per request)
PIPE_BUF = 4096  # Linux's: a write to a pipe of up to this many bytes is never interleaved


def _timestamp(created: float) -> str:
    """``created`` (seconds since the epoch) as UTC ISO 8601 with milliseconds."""
    global _second
    second, cached = int(created), _second  # read once: other threads format lines too
    if second != cached[0]:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int((created - second) * 1000):03d}Z"


def _line(created: float, level: str, logger: str, msg: str) -> dict[str, Any]:
    """The fields every JSON line begins with, in their order."""
    return {"ts": _timestamp(created), "level": level, "logger": logger, "msg": msg}


class JSONFormatter(logging.Formatter):
    """Timestamp, level, logger, message and the record's ``extra`` fields as JSON."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        out = _line(record.created, record.levelname.lower(), record.name, record.getMessage())
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """``time level logger msg key=value …`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        extras = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD)
        line = f"{self.formatTime(record)} {record.levelname.lower():5} {record.name} {record.getMessage()}"
        return f"{line} {extras}".rstrip()


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure_logging`` installs (``AccessLog`` writes past it)."""


class AccessLog:
    """The access log: a line a request on the ``memtrace.access`` logger, with its request
    id, method, path, status and latency.

    Where that logger writes through the JSON handler ``configure_logging`` installed, and
    nothing else (no handler or filter of its own), the line is made here and the lines of
    one turn of the event loop go to stderr in one write as the loop's next turn begins: a
    record through ``logging`` (a LogRecord, the handler's lock, a write) took about a
    seventh of a GET's CPU at c=32. A process killed outright loses at most those few
    lines. Any other set-up (tests capturing records, an embedder's handlers, the console
    format) gets its record through ``logging``, as every other log does.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._lines: TurnBatch[bytes] = TurnBatch(self._write)
        self._handler: _Handler | None = None

    def request(
        self, request_id: str, method: str, path: str, status: int, latency_ms: float
    ) -> None:
        """Log one request."""
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": latency_ms,
        }
        handler = self._direct()
        if handler is None:
            # Made and handled here: ``info()`` would walk the stack for the caller.
            logger.handle(
                logger.makeRecord(
                    logger.name, logging.INFO, __file__, 0, "request", (), None, extra=fields
                )
            )
            return
        self._handler = handler
        line = _line(time.time(), "info", logger.name, "request")
        self._lines.put(orjson.dumps({**line, **fields}) + b"\n")

    def flush(self) -> None:
        """Write the lines made since the last write."""
        self._lines.flush()

    def _write(self, lines: list[bytes]) -> None:
        handler = self._handler
        if handler is None:
            return
        handler.acquire()  # not in the middle of another record's line
        try:
            # Writes of at most PIPE_BUF bytes, whole lines each: on a pipe shared by
            # ``--workers`` processes, no other process's line lands inside one of them.
            chunk: list[bytes] = []
            size = 0
            for line in lines:
                if chunk and size + len(line) > PIPE_BUF:
                    handler.stream.write(b"".join(chunk).decode())
                    handler.stream.flush()
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            handler.stream.write(b"".join(chunk).decode())
            handler.stream.flush()
        except (OSError, ValueError):
            pass  # stderr gone (closed at exit): like logging's own handlers, never raise
        finally:
            handler.release()

    def _direct(self) -> _Handler | None:
        """The installed JSON handler, if it is the only place this logger's lines go."""
        logger, parent = self.logger, self.logger.parent
        if logger.handlers or logger.filters or not logger.propagate or parent is None:
            return None
        if parent.name != "memtrace" or parent.filters or parent.propagate:
            return None
        handlers = parent.handlers
        if len(handlers) != 1 or type(handlers[0]) is not _Handler:
            return None
        handler = handlers[0]
        if handler.filters or handler.level > logging.INFO:
            return None
        if not isinstance(handler.formatter, JSONFormatter):
            return None
        return handler


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Send the ``memtrace`` loggers to stderr in the chosen format."""
    handler = _Handler(sys.stderr)
    formatter: logging.Formatter = JSONFormatter() if fmt == "json" else ConsoleFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger("memtrace")
    root.handlers[:] = [handler]
    root.setLevel({"warn": "WARNING"}.get(level.lower(), level.upper()))
    root.propagate = False
