"""A throwaway PostgreSQL cluster for the tests, unless MEMTRACE_TEST_POSTGRES_URL names one.

The cluster runs on 127.0.0.1 on a free port with its data in a temporary directory,
and is stopped at the end of the test session. As root, the server runs as the
``postgres`` user (initdb refuses root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg


def _bindir() -> Path:
    found = shutil.which("initdb") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed: `.ci/run` installs it (apt-get install postgresql), "
            "or set MEMTRACE_TEST_POSTGRES_URL"
        )
    return Path(found).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A running PostgreSQL server to create test databases in."""

    def __init__(self) -> None:
        self.url = os.environ.get("MEMTRACE_TEST_POSTGRES_URL", "")
        self._base: Path | None = None
        self._prefix: list[str] = []

    def start(self) -> Cluster:
        if self.url:
            return self
        bindir = _bindir()
        self._base = Path(tempfile.mkdtemp(prefix="memtrace-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self._base, "postgres", "postgres")
            self._prefix = ["runuser", "-u", "postgres", "--"]
        data, port = self._base / "data", _free_port()
        self._run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "memtrace",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        options = f"-p {port} -k {self._base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(self._base / "log"),
            "-o",
            options,
            "-w",
            "start",
        )
        self._pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data)]
        self._start_args = ["-l", str(self._base / "log"), "-o", options, "-w", "start"]
        self.url = f"postgresql://memtrace@127.0.0.1:{port}/postgres"
        return self

    def _run(self, *args: str) -> None:
        subprocess.run([*self._prefix, *args], check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        if self._base is None:
            return
        subprocess.run(
            [*self._prefix, *self._pg_ctl, "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self._base, ignore_errors=True)
        self._base = None

    def pause(self) -> None:
        """Stop the server, keeping its data (an outage)."""
        self._run(*self._pg_ctl, "-m", "fast", "stop")

    def resume(self) -> None:
        """Start it again on the same port and data."""
        self._run(*self._pg_ctl, *self._start_args)

    def new_database(self) -> str:
        """A fresh empty database; its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path="/" + name))
