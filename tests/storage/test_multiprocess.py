"""Two ``memtrace serve`` processes on one store serve one org consistently."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import LiveServer, memtrace_cli, new_cli_key, refused_within


@pytest.fixture(params=["sqlite", "postgres"])
def two_servers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[LiveServer, LiveServer]]:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{(tmp_path / 'shared.db').as_posix()}"
    first = LiveServer(tmp_path / "a", store_url=url).start()
    second = LiveServer(tmp_path / "b", store_url=url).start()
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def test_two_processes_share_one_store(two_servers: tuple[LiveServer, LiveServer]) -> None:
    a, b = two_servers
    _, key = new_cli_key(a.data_dir, "read,write", store_url=a.store_url)
    h = {"x-api-key": key}
    # read-your-writes across processes
    created = httpx.post(
        a.url + "/api/v1/memories", json={"agent_id": "x", "content": "written via A"}, headers=h
    )
    assert created.status_code == 201
    got = httpx.get(b.url + f"/api/v1/memories/{created.json()['id']}", headers=h)
    assert got.status_code == 200 and got.json()["content"] == "written via A"
    session = httpx.post(b.url + "/api/v1/sessions", json={"agent_id": "x"}, headers=h).json()
    assert httpx.get(a.url + f"/api/v1/sessions/{session['id']}", headers=h).status_code == 200

    # the same memory sent to both processes at once is stored exactly once
    body = {"agent_id": "x", "content": "racing across processes"}

    def post(i: int) -> int:
        server = a if i % 2 else b
        return httpx.post(
            server.url + "/api/v1/memories", json=body, headers=h, timeout=30
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        statuses = sorted(pool.map(post, range(24)))
    assert statuses == [201] + [409] * 23

    # a key revoked by another process is refused by both servers within the key cache window
    keys = memtrace_cli(
        "key", "list", "--org", _org_of(a, key), data_dir=a.data_dir, store_url=a.store_url
    ).stdout
    key_id = keys.strip().splitlines()[-1].split()[0]
    memtrace_cli("key", "revoke", key_id, data_dir=a.data_dir, store_url=a.store_url)
    for server in (a, b):
        url = server.url + "/api/v1/agents"
        refused_within(3, lambda url=url: httpx.get(url, headers=h).status_code)  # type: ignore[misc]


def test_writers_of_one_key_in_two_processes_leave_one_current_version(
    two_servers: tuple[LiveServer, LiveServer],
) -> None:
    a, b = two_servers
    _, key = new_cli_key(a.data_dir, "read,write", store_url=a.store_url)
    h = {"x-api-key": key}

    def post(i: int) -> str:
        server = a if i % 2 else b
        body = {"agent_id": "x", "content": f"version {i}", "key": "status"}
        r = httpx.post(server.url + "/api/v1/memories", json=body, headers=h, timeout=30)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(post, range(32)))
    current = httpx.get(a.url + "/api/v1/memories", params={"key": "status"}, headers=h).json()
    assert current["count"] == 1
    versions = httpx.get(b.url + f"/api/v1/memories/{ids[0]}/versions", headers=h).json()
    assert sorted(m["id"] for m in versions["memories"]) == sorted(ids)
    times = [m["id"][4:20] for m in versions["memories"]]  # ids carry their time in hex
    assert versions["memories"][0]["id"] == current["memories"][0]["id"]  # the newest is current
    assert times == sorted(times, reverse=True)
    assert [m for m in versions["memories"] if "superseded_by" not in m] == versions["memories"][:1]


def _org_of(server: LiveServer, key: str) -> str:
    memory = httpx.get(
        server.url + "/api/v1/memories", params={"limit": 1}, headers={"x-api-key": key}
    ).json()
    return str(memory["memories"][0]["org_id"])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_serve_with_two_workers(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    server = LiveServer(tmp_path / "w", store_url=url, args=("--workers", "2")).start()
    try:
        assert server.proc is not None
        children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text()
        assert len(children.split()) >= 2  # the two workers (and multiprocessing's helper)
        _, key = new_cli_key(server.data_dir, "read,write", store_url=url)
        h = {"x-api-key": key}

        def post(i: int) -> int:
            body = {"agent_id": "x", "content": "the same thought" if i % 2 else f"thought {i}"}
            return httpx.post(
                server.url + "/api/v1/memories", json=body, headers=h, timeout=30
            ).status_code

        # fresh connections, so the kernel spreads them over both workers
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(post, range(40)))
        assert statuses.count(201) == 21 and statuses.count(409) == 19  # dedup across workers
        listed = httpx.get(server.url + "/api/v1/memories", params={"limit": 100}, headers=h).json()
        assert listed["count"] == 21
    finally:
        server.stop()
    assert server.proc is not None and server.proc.returncode == 0
