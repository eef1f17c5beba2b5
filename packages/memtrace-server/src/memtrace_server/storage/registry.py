"""Pick a store from a URL; drivers are imported only when their scheme is used."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from memtrace_server.storage.base import Store


def store_from_url(url: str, *, synchronous: str = "FULL") -> Store:
    """A store for a URL: ``sqlite:///relative/file.db``, ``sqlite:////absolute/file.db``
    or ``postgresql://user:password@host:port/database``.

    Raises ValueError for an unknown scheme, naming what is supported.
    """
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ValueError(f"store url '{url}' names no file")
        from memtrace_server.storage.sqlite import SQLiteStore

        return SQLiteStore(Path(path), synchronous=synchronous)
    if parsed.scheme in ("postgres", "postgresql"):
        try:
            from memtrace_server.storage.postgres import PostgresStore
        except ImportError as exc:
            raise ValueError(
                "the PostgreSQL store needs its driver: pip install 'memtrace-server[postgres]'"
            ) from exc
        return PostgresStore(url)
    raise ValueError(f"unsupported store url '{url}': use sqlite:///path/memtrace.db")
