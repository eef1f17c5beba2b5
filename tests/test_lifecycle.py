"""Memory lifecycle on both backends: erase, cascade, expiry, retention, updates, export/import."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from memtrace_server.api.app import create_app
from memtrace_server.core.records import MemoryFilter
from memtrace_server.service.admin import Admin, AdminError
from memtrace_server.storage.registry import stores_from_url

from conftest import App, make_settings, memtrace_cli

V1 = "/api/v1"


def _iso(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(params=["sqlite", "postgres"])
def lapp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    settings = make_settings(tmp_path, store_url=url or None)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield App(client, settings)


@pytest.fixture
def two_orgs(lapp: App) -> tuple[dict[str, str], dict[str, str]]:
    a = lapp.as_key(lapp.new_key(lapp.new_org("A")))
    b = lapp.as_key(lapp.new_key(lapp.new_org("B")))
    return a, b


def stored_count(app: App, org_headers: dict[str, str]) -> int:
    """Rows in the store for the org, expired or not: what erasure must really remove."""
    org_id = app.keys[org_headers["x-api-key"]]

    async def count() -> int:
        store = await app.services.stores.tenant(org_id)
        return int(await store.count_memories(org_id, MemoryFilter()))

    return int(app.call(count))


def post(app: App, h: dict[str, str], **body: Any) -> dict[str, Any]:
    r = app.client.post(V1 + "/memories", json=body, headers=h)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_delete_one_memory_everywhere(
    lapp: App, two_orgs: tuple[dict[str, str], dict[str, str]]
) -> None:
    a, b = two_orgs
    c = lapp.client
    m = post(lapp, a, agent_id="bot", content="secret plan", tags=["t"], dedup_key="dk")
    keep = post(lapp, a, agent_id="bot", content="keep me", tags=["t"])
    assert c.delete(V1 + f"/memories/{m['id']}", headers=b).status_code == 404  # not B's to delete
    assert c.delete(V1 + f"/memories/{m['id']}", headers=a).status_code == 204
    assert c.delete(V1 + f"/memories/{m['id']}", headers=a).json() == {"error": "memory not found"}
    assert c.get(V1 + f"/memories/{m['id']}", headers=a).status_code == 404
    assert c.get(V1 + "/memories/dk", headers=a).status_code == 404
    assert [
        x["id"] for x in c.get(V1 + "/memories", params={"tags": "t"}, headers=a).json()["memories"]
    ] == [keep["id"]]
    assert (
        c.post(V1 + "/search", json={"content_contains": "secret"}, headers=a).json()["count"] == 0
    )
    assert stored_count(lapp, a) == 1
    # the same content can be stored again: nothing of it is left, not even for dedup
    assert (
        c.post(
            V1 + "/memories", json={"agent_id": "bot", "content": "secret plan"}, headers=a
        ).status_code
        == 201
    )


def test_erase_by_filter(lapp: App, two_orgs: tuple[dict[str, str], dict[str, str]]) -> None:
    a, b = two_orgs
    c = lapp.client
    for i in range(4):
        post(lapp, a, agent_id="bot", content=f"pii {i}", tags=["pii"] if i % 2 else ["ok"])
        post(lapp, b, agent_id="bot", content=f"pii {i}", tags=["pii"])
    assert c.post(V1 + "/memories/delete", json={}, headers=a).status_code == 400
    assert c.post(V1 + "/memories/delete", json={"dry_run": True}, headers=a).status_code == 400
    dry = c.post(
        V1 + "/memories/delete",
        json={"agent_id": "bot", "tags": ["pii"], "dry_run": True},
        headers=a,
    )
    assert dry.json() == {"deleted": 2, "dry_run": True}
    assert stored_count(lapp, a) == 4
    done = c.post(V1 + "/memories/delete", json={"agent_id": "bot", "tags": ["pii"]}, headers=a)
    assert done.json() == {"deleted": 2, "dry_run": False}
    assert sorted(m["content"] for m in c.get(V1 + "/memories", headers=a).json()["memories"]) == [
        "pii 0",
        "pii 2",
    ]
    assert c.post(V1 + "/search", json={"tags": ["pii"]}, headers=a).json()["count"] == 0
    assert stored_count(lapp, b) == 4  # the same filters never reach another org
    reader = lapp.as_key(lapp.new_key(lapp.keys[a["x-api-key"]], "read", name="ro"))
    assert (
        c.post(V1 + "/memories/delete", json={"agent_id": "bot"}, headers=reader).status_code == 403
    )


def test_session_and_agent_deletion(
    lapp: App, two_orgs: tuple[dict[str, str], dict[str, str]]
) -> None:
    a, b = two_orgs
    c = lapp.client
    agent = c.post(V1 + "/agents", json={"name": "helper"}, headers=a).json()
    s1 = c.post(V1 + "/sessions", json={"agent_id": agent["id"]}, headers=a).json()["id"]
    s2 = c.post(V1 + "/sessions", json={"agent_id": agent["id"]}, headers=a).json()["id"]
    post(lapp, a, agent_id=agent["id"], session_id=s1, content="in s1")
    post(lapp, a, agent_id=agent["id"], session_id=s2, content="in s2")
    post(lapp, a, agent_id="helper", content="under the name")
    post(lapp, a, agent_id="someone_else", content="not the agent's")
    assert c.delete(V1 + f"/sessions/{s1}", headers=b).status_code == 404
    assert c.delete(V1 + f"/sessions/{s1}", headers=a).status_code == 204
    assert c.get(V1 + f"/sessions/{s1}", headers=a).status_code == 404
    assert (
        c.get(V1 + f"/sessions/{s1}/memories", headers=a).json()["count"] == 1
    )  # kept without cascade
    assert (
        c.delete(V1 + f"/sessions/{s2}", params={"cascade": "true"}, headers=a).status_code == 204
    )
    assert c.get(V1 + f"/sessions/{s2}/memories", headers=a).json()["count"] == 0
    c.post(V1 + "/sessions", json={"agent_id": agent["id"]}, headers=a)
    assert c.delete(V1 + f"/agents/{agent['id']}", headers=a).status_code == 409  # has a session
    assert (
        c.delete(V1 + f"/agents/{agent['id']}", params={"cascade": "true"}, headers=b).status_code
        == 404
    )
    assert (
        c.delete(V1 + f"/agents/{agent['id']}", params={"cascade": "true"}, headers=a).status_code
        == 204
    )
    assert c.get(V1 + "/agents/helper", headers=a).status_code == 404
    assert c.get(V1 + "/sessions", headers=a).json()["count"] == 0
    left = c.get(V1 + "/memories", headers=a).json()["memories"]
    assert [m["content"] for m in left] == ["not the agent's"]
    assert stored_count(lapp, a) == 1


def test_expiry_hides_at_once_and_purge_erases(
    lapp: App, two_orgs: tuple[dict[str, str], dict[str, str]]
) -> None:
    a, _ = two_orgs
    c = lapp.client
    soon = post(
        lapp,
        a,
        agent_id="bot",
        content="short-lived",
        expires_at=_iso(timedelta(seconds=1)),
        dedup_key="sl",
    )
    assert "expires_at" in soon
    ttl = post(lapp, a, agent_id="bot", content="a week", ttl="7d")
    assert ttl["expires_at"] > ttl["time"]
    post(lapp, a, agent_id="bot", content="forever")
    for bad in (
        {"ttl": "0s"},
        {"ttl": "soon"},
        {"expires_at": _iso(-timedelta(hours=1))},
        {"ttl": "1h", "expires_at": _iso(timedelta(hours=1))},
    ):
        assert (
            c.post(
                V1 + "/memories", json={"agent_id": "bot", "content": "x", **bad}, headers=a
            ).status_code
            == 400
        )
    assert c.get(V1 + "/memories", headers=a).json()["count"] == 3
    time.sleep(1.2)  # let the one-second lifetime pass
    visible = c.get(V1 + "/memories", headers=a).json()["memories"]
    assert sorted(m["content"] for m in visible) == ["a week", "forever"]
    assert c.get(V1 + f"/memories/{soon['id']}", headers=a).status_code == 404
    assert (
        c.post(V1 + "/search", json={"content_contains": "short"}, headers=a).json()["count"] == 0
    )
    assert stored_count(lapp, a) == 3  # hidden, not yet purged
    # an expired memory does not block the same content as a duplicate
    assert (
        c.post(
            V1 + "/memories",
            json={"agent_id": "bot", "content": "short-lived", "dedup_key": "sl"},
            headers=a,
        ).status_code
        == 201
    )
    memories = lapp.client.app.state.services.memories  # type: ignore[attr-defined]
    assert lapp.call(memories.purge) == 1
    assert stored_count(lapp, a) == 3


def test_org_retention(lapp: App, two_orgs: tuple[dict[str, str], dict[str, str]]) -> None:
    a, b = two_orgs
    c = lapp.client
    for h in (a, b):
        post(lapp, h, agent_id="bot", content="ten days old", time=_iso(-timedelta(days=10)))
        post(lapp, h, agent_id="bot", content="fresh")
    assert c.get(V1 + "/memories", headers=a).json()["count"] == 2  # the org's row is read
    lapp.call(lapp.admin.set_retention, lapp.keys[a["x-api-key"]], 7)
    assert [m["content"] for m in c.get(V1 + "/memories", headers=a).json()["memories"]] == [
        "fresh"
    ]
    assert c.get(V1 + "/memories", headers=b).json()["count"] == 2  # B keeps everything
    assert c.post(V1 + "/search", json={"content_contains": "old"}, headers=a).json()["count"] == 0
    memories = lapp.client.app.state.services.memories  # type: ignore[attr-defined]
    assert lapp.call(memories.purge) == 1
    assert stored_count(lapp, a) == 1 and stored_count(lapp, b) == 2


def test_agent_update_and_activity(
    lapp: App, two_orgs: tuple[dict[str, str], dict[str, str]]
) -> None:
    a, b = two_orgs
    c = lapp.client
    agent = c.post(V1 + "/agents", json={"name": "n", "config": {"x": 1, "y": 2}}, headers=a).json()
    assert "last_active_at" not in agent
    patched = c.patch(
        V1 + f"/agents/{agent['id']}",
        json={"description": "new", "config": {"y": None, "z": 3}},
        headers=a,
    )
    assert patched.status_code == 200
    assert patched.json()["description"] == "new" and patched.json()["config"] == {"x": 1, "z": 3}
    assert (
        c.patch(V1 + f"/agents/{agent['id']}", json={"description": "x"}, headers=b).status_code
        == 404
    )
    assert (
        c.patch(V1 + f"/agents/{agent['id']}", json={"config": "no"}, headers=a).status_code == 400
    )
    session = c.post(V1 + "/sessions", json={"agent_id": agent["id"]}, headers=a).json()
    m = post(lapp, a, agent_id=agent["id"], session_id=session["id"], content="activity")
    assert c.get(V1 + f"/agents/{agent['id']}", headers=a).json()["last_active_at"] == m["time"]
    assert c.get(V1 + f"/sessions/{session['id']}", headers=a).json()["last_active_at"] == m["time"]


def test_export_requires_admin_and_streams_jsonl(
    lapp: App, two_orgs: tuple[dict[str, str], dict[str, str]]
) -> None:
    a, _ = two_orgs
    post(lapp, a, agent_id="bot", content="exported")
    assert lapp.client.get(V1 + "/export", headers=a).status_code == 403
    admin = lapp.as_key(lapp.new_key(lapp.keys[a["x-api-key"]], "admin", name="adm"))
    r = lapp.client.get(V1 + "/export", headers=admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [(x["kind"], x.get("content")) for x in lines] == [("memory", "exported")]


def test_round_trip_sqlite_to_postgres_is_exact_and_idempotent(tmp_path: Path, pg_url: str) -> None:
    source = make_settings(tmp_path)
    with TestClient(create_app(source)) as client:
        app = App(client, source)
        org = app.new_org("Src")
        h = app.as_key(app.new_key(org))
        agent = client.post(
            V1 + "/agents", json={"name": "r", "description": "d", "config": {"k": [1]}}, headers=h
        ).json()
        session = client.post(
            V1 + "/sessions", json={"agent_id": agent["id"], "metadata": {"m": 1}}, headers=h
        ).json()
        client.post(V1 + "/sessions", json={"agent_id": "implicit_one"}, headers=h)
        for i in range(2500):  # more than one export page
            client.post(
                V1 + "/memories",
                headers=h,
                json={
                    "agent_id": agent["id"],
                    "session_id": session["id"],
                    "content": f"memory {i} ✓",
                    "tags": ["a", f"t{i % 3}"],
                    "importance": 0.5,
                    "metadata": {"i": i},
                    "parent_id": "p",
                    "memory_type": "entity",
                    "event_type": "imported",
                    "ttl": "7d" if i % 2 else None,
                    "time": _iso(-timedelta(minutes=i)),
                    "key": f"fact{i % 4}" if i < 12 else None,  # versions and their history
                },
            )
        client.put(V1 + f"/sessions/{session['id']}", json={"status": "closed"}, headers=h)

    async def export(url: str) -> list[bytes]:
        stores = stores_from_url(url)
        await stores.open()
        try:
            return [line async for line in Admin(stores).export(org, None)]
        finally:
            await stores.close()

    async def import_into(url: str, lines: list[bytes]) -> Any:
        stores = stores_from_url(url)
        await stores.open()
        try:
            admin = Admin(stores)
            with contextlib.suppress(AdminError):
                await admin.create_org("Dst", org)
            return await admin.import_lines(org, lines)
        finally:
            await stores.close()

    sqlite_url = f"sqlite:///{(source.data_dir / 'memtrace.db').as_posix()}"
    lines = asyncio.run(export(sqlite_url))
    assert len(lines) == 2 + 2 + 2500
    history = [json.loads(line) for line in lines if b'"superseded_by"' in line]
    assert len(history) == 8 and all(m["key"] and m["superseded_at"] for m in history)
    first = asyncio.run(import_into(pg_url, lines))
    assert (first.agents, first.sessions, first.memories, first.skipped) == (2, 2, 2500, 0)
    assert asyncio.run(export(pg_url)) == lines  # every field, id and timestamp
    again = asyncio.run(import_into(pg_url, lines))
    assert (again.agents, again.sessions, again.memories, again.skipped) == (0, 0, 0, 2504)


def test_cli_export_and_import(tmp_path: Path) -> None:
    from conftest import LiveServer, new_cli_key

    server = LiveServer(tmp_path / "live").start()
    try:
        org, key = new_cli_key(server.data_dir)
        import httpx

        for i in range(3):
            httpx.post(
                server.url + V1 + "/memories",
                json={"agent_id": "a", "content": f"m{i}"},
                headers={"x-api-key": key},
            )
        dump = memtrace_cli("export", "--org", org, data_dir=server.data_dir).stdout
        assert len(dump.splitlines()) == 3
        path = tmp_path / "dump.jsonl"
        path.write_text(dump)
        target = tmp_path / "elsewhere"  # another deployment
        created = memtrace_cli("org", "create", "Copy", data_dir=target).stdout
        other = next(line.split()[-1] for line in created.splitlines() if "id:" in line)
        out = memtrace_cli("import", "--org", other, str(path), data_dir=target).stdout
        assert "Imported 3 memories" in out
        out = memtrace_cli("import", "--org", other, str(path), data_dir=target).stdout
        assert "Imported 0 memories" in out and "3 already present" in out
        empty = memtrace_cli("import", "--org", other, "/dev/null", data_dir=target)
        assert "Imported 0 memories" in empty.stdout
        broken = tmp_path / "broken.jsonl"
        broken.write_text('{"kind": "memory"}\n')
        refused = memtrace_cli("import", "--org", other, str(broken), data_dir=target, check=False)
        assert refused.returncode == 1 and "invalid export line" in refused.stderr
        retention = memtrace_cli(
            "org", "set-retention", other, "--days", "30", data_dir=target
        ).stdout
        assert retention.strip() == f"Retention of {other}: 30 days"
    finally:
        server.stop()
