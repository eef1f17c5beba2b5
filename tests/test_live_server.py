"""A real ``memtrace serve`` process: bootstrap, CLI admin, durability under kill -9."""

from __future__ import annotations

import concurrent.futures
import sqlite3
from pathlib import Path

import httpx
import pytest

from conftest import LiveServer, memtrace_cli, new_cli_key, refused_within


def test_first_serve_prints_bootstrap_admin_key_once(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "d").start()
    try:
        log = server.log.read_text()
        assert "FIRST RUN: Save your admin API key" in log
        key = next(w for w in log.split() if w.startswith("mtk_"))
        r = httpx.get(server.url + "/api/v1/agents", headers={"x-api-key": key})
        assert r.status_code == 200
    finally:
        server.stop()
    again = LiveServer(tmp_path / "d").start()
    try:
        assert "FIRST RUN" not in again.log.read_text()  # a second start prints no key
    finally:
        again.stop()


def test_cli_org_and_key_lifecycle(live_server: LiveServer) -> None:
    data = live_server.data_dir
    org_id, key = new_cli_key(data, "read")
    assert org_id.startswith("org_") and len(org_id) == 28
    listing = memtrace_cli("org", "list", data_dir=data).stdout
    assert org_id in listing and "org_default" in listing
    keys = memtrace_cli("key", "list", "--org", org_id, data_dir=data).stdout
    assert key not in keys and "read" in keys
    headers = {"x-api-key": key}
    assert httpx.get(live_server.url + "/api/v1/memories", headers=headers).status_code == 200
    assert (
        httpx.post(
            live_server.url + "/api/v1/memories",
            json={"agent_id": "a", "content": "x"},
            headers=headers,
        ).status_code
        == 403
    )
    key_id = keys.strip().splitlines()[-1].split()[0]
    assert (
        memtrace_cli("key", "revoke", key_id, data_dir=data).stdout.strip()
        == f"Key {key_id} revoked"
    )
    # a separate process revoked it; the running server refuses it within its key cache window
    refused_within(
        3, lambda: httpx.get(live_server.url + "/api/v1/memories", headers=headers).status_code
    )
    r = httpx.get(live_server.url + "/api/v1/memories", headers=headers)
    assert r.status_code == 401 and r.json() == {"error": "invalid API key"}
    bad = memtrace_cli(
        "key", "create", "--org", "org_nope", "--name", "x", data_dir=data, check=False
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error: org 'org_nope' not found")
    bad = memtrace_cli(
        "key",
        "create",
        "--org",
        org_id,
        "--name",
        "x",
        "--permissions",
        "root",
        data_dir=data,
        check=False,
    )
    assert bad.returncode == 1 and "invalid permissions" in bad.stderr
    # an org with data is only deleted with --cascade
    _, writer_key = (
        org_id,
        memtrace_cli("key", "create", "--org", org_id, "--name", "w", data_dir=data).stdout.split()[
            -1
        ],
    )
    assert (
        httpx.post(
            live_server.url + "/api/v1/memories",
            json={"agent_id": "a", "content": "x"},
            headers={"x-api-key": writer_key},
        ).status_code
        == 201
    )
    refused = memtrace_cli("org", "delete", org_id, data_dir=data, check=False)
    assert refused.returncode == 1 and "--cascade" in refused.stderr
    memtrace_cli("org", "delete", org_id, "--cascade", data_dir=data)
    assert (
        httpx.get(
            live_server.url + "/api/v1/memories", headers={"x-api-key": writer_key}
        ).status_code
        == 401
    )
    assert org_id not in memtrace_cli("org", "list", data_dir=data).stdout


def test_kill_9_after_201_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "d"
    server = LiveServer(data).start()
    _, key = new_cli_key(data)
    headers = {"x-api-key": key}

    def write(i: int) -> list[str]:
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as c:
            if i % 4 == 0:
                r = c.post(
                    "/api/v1/memories",
                    json={
                        "memories": [
                            {"agent_id": f"a{i}", "content": f"batch {i}/{j}"} for j in range(25)
                        ]
                    },
                )
                assert r.status_code == 201
                return [m["id"] for m in r.json()["memories"]]
            r = c.post("/api/v1/memories", json={"agent_id": f"a{i}", "content": f"single {i}"})
            assert r.status_code == 201
            return [r.json()["id"]]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        acked = [mid for ids in pool.map(write, range(64)) for mid in ids]
    server.kill()  # SIGKILL right after the last 201: no shutdown hook runs
    assert len(acked) == 16 * 25 + 48

    with sqlite3.connect(data / "memtrace.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    restarted = LiveServer(data).start()
    try:
        with httpx.Client(base_url=restarted.url, headers=headers, timeout=30) as c:
            for mid in acked:
                assert c.get(f"/api/v1/memories/{mid}").status_code == 200, mid
            total = c.get("/api/v1/memories", params={"limit": 1000}).json()
            assert total["count"] == len(acked) and total["has_more"] is False
    finally:
        restarted.stop()


def test_concurrent_identical_writes_store_exactly_one(live_server: LiveServer) -> None:
    _, key = new_cli_key(live_server.data_dir)
    body = {"agent_id": "racer", "content": "the same thought at the same instant"}

    def post(_: int) -> int:
        return httpx.post(
            live_server.url + "/api/v1/memories", json=body, headers={"x-api-key": key}, timeout=30
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = sorted(pool.map(post, range(32)))
    assert statuses == [201] + [409] * 31
    listed = httpx.get(
        live_server.url + "/api/v1/memories",
        params={"agent_id": "racer"},
        headers={"x-api-key": key},
    ).json()
    assert listed["count"] == 1


def _ingest_children(pid: int) -> list[int]:
    """The ingest processes ``pid`` started (found by each process's parent in ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"memtrace_server.storage.ingest_process" in argv:
            found.append(int(stat.parent.name))
    return found


def test_serve_inserts_through_an_ingest_process_unless_told_not_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for setting, children in (("", 1), ("false", 0)):
        if setting:
            monkeypatch.setenv("MEMTRACE_STORE_INGEST_PROCESS", setting)
        server = LiveServer(tmp_path / f"d{children}").start()
        try:
            assert server.proc is not None
            started = _ingest_children(server.proc.pid)
            assert len(started) == children
            _, key = new_cli_key(server.data_dir)
            with httpx.Client(base_url=server.url, headers={"x-api-key": key}) as client:
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    codes = list(
                        pool.map(
                            lambda n: (
                                client.post(
                                    "/api/v1/memories",
                                    json={"agent_id": "a", "content": f"<i>{n}</i>"},
                                ).status_code
                            ),
                            range(40),
                        )
                    )
                assert codes == [201] * 40
                assert client.get("/api/v1/memories", params={"limit": 100}).json()["count"] == 40
        finally:
            server.stop()
        # the server waits for its ingest process to finish and exit before it exits
        assert [pid for pid in started if Path(f"/proc/{pid}").exists()] == []
