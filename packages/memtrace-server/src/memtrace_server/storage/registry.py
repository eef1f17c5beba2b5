"""Pick a store from a URL; drivers are imported only when their scheme is used."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from memtrace_server.storage.base import Store
from memtrace_server.storage.routing import Stores


def store_from_url(url: str, *, synchronous: str = "FULL", ingest_process: bool = False) -> Store:
    """A store for a URL: ``sqlite:///relative/file.db``, ``sqlite:////absolute/file.db``
    or ``postgresql://user:password@host:port/database``. ``ingest_process``: a SQLite
    store's memory inserts run in a process of their own (``storage.ingest_process``).

    Raises ValueError for an unknown scheme, naming what is supported.
    """
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ValueError(f"store url '{url}' names no file")
        from memtrace_server.storage.sqlite import SQLiteStore

        return SQLiteStore(Path(path), synchronous=synchronous, ingest_process=ingest_process)
    if parsed.scheme in ("postgres", "postgresql"):
        try:
            from memtrace_server.storage.postgres import PostgresStore
        except ImportError as exc:
            raise ValueError(
                "the PostgreSQL store needs its driver: pip install 'memtrace-server[postgres]'"
            ) from exc
        return PostgresStore(url)
    raise ValueError(f"unsupported store url '{url}': use sqlite:///path/memtrace.db")


def stores_from_url(
    url: str, *, synchronous: str = "FULL", master_key: str = "", ingest_process: bool = False
) -> Stores:
    """The default store at ``url`` with per-org routing (see ``storage.routing``).
    ``ingest_process`` applies to the default store (an org's own store gets none: a
    process for each would cost more than its inserts gain).

    ``master_key`` is ``MEMTRACE_MASTER_KEY``; it is needed only once an org is bound to a
    store of its own. A malformed key raises ValueError.
    """
    from memtrace_server.storage.secrets import parse_master_key

    key = parse_master_key(master_key) if master_key else None
    return Stores(
        store_from_url(url, synchronous=synchronous, ingest_process=ingest_process),
        master_key=key,
        opener=lambda other: store_from_url(other, synchronous=synchronous),
    )
