"""Shared fixtures: an in-process app on a real SQLite file, and a live server process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from memtrace import AsyncMemtrace, Memtrace
from memtrace_server.api.app import create_app
from memtrace_server.config import Settings, load_settings
from memtrace_server.service.admin import Admin

# The Agents SDK reads this once, on first use: no trace may leave the machine in tests.
os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class App:
    """An app under test with helpers to mint orgs and keys."""

    client: TestClient
    settings: Settings
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def admin(self) -> Admin:
        return Admin(self.services.stores)

    @property
    def services(self) -> Any:
        return self.client.app.state.services  # type: ignore[attr-defined]

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        assert self.client.portal is not None
        return self.client.portal.call(lambda: fn(*args, **kwargs))

    def new_org(self, name: str = "Org") -> str:
        return str(self.call(self.admin.create_org, name).id)

    def new_key(self, org_id: str, permissions: str = "read,write", name: str | None = None) -> str:
        key, _ = self.call(self.admin.create_key, org_id, name or f"k{len(self.keys)}", permissions)
        self.keys[key] = org_id
        return str(key)

    def as_key(self, key: str) -> dict[str, str]:
        return {"x-api-key": key}

    def sdk(self, key: str, **options: Any) -> Memtrace:
        """Our sync SDK client, talking to this app in-process."""
        return Memtrace("http://testserver", key, transport=AppTransport(self.client), **options)

    def async_sdk(self, key: str, **options: Any) -> AsyncMemtrace:
        """Our async SDK client, talking to this app in-process."""
        transport = httpx.ASGITransport(app=self.client.app)
        return AsyncMemtrace("http://testserver", key, transport=transport, **options)


class AppTransport(httpx.BaseTransport):
    """Carries the SDK's ``httpx`` requests into the in-process app through its TestClient.

    The TestClient speaks its own HTTP client library; this adapts requests and responses
    so the SDK, which uses ``httpx``, reaches the real app without a socket.
    """

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.client.request(
            request.method,
            str(request.url),
            headers=[(k, v) for k, v in request.headers.multi_items() if k.lower() != "host"],
            content=request.read(),
        )
        return httpx.Response(
            answer.status_code,
            headers=list(answer.headers.multi_items()),
            content=answer.content,
            request=request,
        )


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for an app in the test's process. Its inserts stay on the store's writer
    thread unless a test asks for the ingest process: a child process for every app would
    add minutes to the suite (``tests/storage/test_ingest_process.py`` and every test of a
    ``memtrace serve`` subprocess run it)."""
    overrides.setdefault("store_ingest_process", False)
    return load_settings(
        env={}, data_dir=tmp_path / "data", store_synchronous="NORMAL", **overrides
    )


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the server's loop)."""
    return "asyncio"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    from pg import Cluster

    cluster = Cluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Any) -> str:
    """A fresh database on the test PostgreSQL server."""
    return str(pg_cluster.new_database())


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield App(client, settings)


@pytest.fixture
def org_key(app: App) -> tuple[str, str]:
    org = app.new_org("Acme")
    return org, app.new_key(org)


@pytest.fixture
def api(app: App, org_key: tuple[str, str]) -> TestClient:
    """A client that sends org Acme's read/write key on every request."""
    app.client.headers["x-api-key"] = org_key[1]
    return app.client


def refused_within(seconds: float, request: Any) -> None:
    """Poll ``request()`` (a status code) until it is 401; fail after ``seconds``.

    Key lookups are cached for ``auth.key_cache_seconds``: a revocation is promised to take
    effect within that bound, not on the very next request.
    """
    deadline = time.monotonic() + seconds
    while (status := request()) != 401:
        assert status == 200, status
        assert time.monotonic() < deadline, f"still accepted after {seconds} s"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memtrace_cli(
    *args: str, data_dir: Path, check: bool = True, store_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``memtrace`` console script."""
    store = ["--store-url", store_url] if store_url else []
    return subprocess.run(
        [str(BIN / "memtrace"), *args, "--data-dir", str(data_dir), *store],
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
        env={**os.environ, "MEMTRACE_STORE_SYNCHRONOUS": "NORMAL"},
    )


class LiveServer:
    """``memtrace serve`` as a subprocess on a free port."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        store_url: str | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.store_url = store_url
        self.args = args
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self.log = data_dir.parent / f"server-{self.port}.log"

    def start(self) -> LiveServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                str(BIN / "memtrace"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                *(["--store-url", self.store_url] if self.store_url else []),
                *self.args,
            ],
            stdout=open(self.log, "a"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("server did not come up")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # pytest shows a test's captured output only when it fails: the server's side of it
        if self.log.exists():
            print(f"--- {self.log.name}, last lines ---")
            print("\n".join(self.log.read_text(errors="replace").splitlines()[-60:]))


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "live").start()
    try:
        yield server
    finally:
        server.stop()


def new_cli_key(
    data_dir: Path, permissions: str = "read,write,admin", store_url: str | None = None
) -> tuple[str, str]:
    """Create an org and a key through the CLI; return (org_id, key)."""
    out = memtrace_cli("org", "create", "Test Org", data_dir=data_dir, store_url=store_url).stdout
    org_id = next(line.split()[-1] for line in out.splitlines() if "id:" in line)
    out = memtrace_cli(
        "key",
        "create",
        "--org",
        org_id,
        "--name",
        f"key-{time.monotonic_ns()}",
        "--permissions",
        permissions,
        data_dir=data_dir,
        store_url=store_url,
    ).stdout
    return org_id, out.strip().splitlines()[-1]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how many tests ran against PostgreSQL, so CI output shows that part ran."""
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if "postgres" in getattr(report, "nodeid", "") and getattr(report, "when", "call") in (
                "call",
                "setup",
            ):
                if outcome == "passed" and report.when != "call":
                    continue
                counts[outcome] = counts.get(outcome, 0) + 1
    if counts:
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        terminalreporter.write_line(f"PostgreSQL backend tests: {summary}")
