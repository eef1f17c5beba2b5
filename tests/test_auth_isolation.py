"""API keys, permissions, revocation, and tenants that never see each other."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from memtrace_server.api.app import create_app

from conftest import App, make_settings, refused_within

V1 = "/api/v1"


def test_key_headers(app: App, org_key: tuple[str, str]) -> None:
    key = org_key[1]
    c = app.client
    assert c.get(V1 + "/agents", headers={"x-api-key": key}).status_code == 200
    assert c.get(V1 + "/agents", headers={"X-API-Key": key}).status_code == 200
    assert c.get(V1 + "/agents", headers={"authorization": f"Bearer {key}"}).status_code == 200
    assert c.get(V1 + "/agents", headers={"authorization": key}).status_code == 200
    assert c.get(V1 + "/agents", headers={"authorization": f"bearer {key}"}).status_code == 401
    assert c.get(V1 + "/agents").json() == {"error": "missing API key"}
    # health, readiness and metrics need no key
    assert c.get("/health").status_code == 200
    assert c.get("/ready").json() == {"status": "ready", "store": "ok"}


def test_permissions_are_enforced(app: App, org_key: tuple[str, str]) -> None:
    org = org_key[0]
    reader, writer, admin = (app.new_key(org, p, name=p) for p in ("read", "write", "admin"))
    c = app.client
    mem = {"agent_id": "a", "content": "x"}
    assert c.post(V1 + "/memories", json=mem, headers=app.as_key(reader)).status_code == 403
    assert c.post(V1 + "/agents", json={"name": "n"}, headers=app.as_key(reader)).status_code == 403
    assert c.put(V1 + "/sessions/sess_x", json={}, headers=app.as_key(reader)).status_code == 403
    assert c.get(V1 + "/memories", headers=app.as_key(reader)).status_code == 200
    assert c.post(V1 + "/search", json={}, headers=app.as_key(reader)).status_code == 200
    assert c.post(V1 + "/memories", json=mem, headers=app.as_key(writer)).status_code == 201
    assert c.get(V1 + "/memories", headers=app.as_key(writer)).status_code == 403
    assert c.get(V1 + "/memories", headers=app.as_key(admin)).status_code == 200
    assert c.post(V1 + "/agents", json={"name": "n"}, headers=app.as_key(admin)).status_code == 201


def test_revoked_key_is_refused_within_the_cache_window(app: App, org_key: tuple[str, str]) -> None:
    key = app.new_key(org_key[0], name="short-lived")
    c = app.client
    assert c.get(V1 + "/agents", headers=app.as_key(key)).status_code == 200
    admin = app.admin
    (record,) = [k for k in app.call(admin.list_keys, org_key[0]) if k.name == "short-lived"]
    app.call(admin.revoke_key, record.id, org_key[0])
    window = app.settings.key_cache_seconds
    assert window > 0
    refused_within(window + 2, lambda: c.get(V1 + "/agents", headers=app.as_key(key)).status_code)
    assert c.get(V1 + "/agents", headers=app.as_key(key)).json() == {"error": "invalid API key"}
    assert c.get(V1 + "/agents", headers=app.as_key(org_key[1])).status_code == 200


def test_without_a_key_cache_revocation_is_immediate(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, key_cache_seconds=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        app = App(client, settings)
        org = app.new_org()
        key = app.new_key(org, name="k")
        assert client.get(V1 + "/agents", headers=app.as_key(key)).status_code == 200
        (record,) = app.call(app.admin.list_keys, org)
        app.call(app.admin.revoke_key, record.id, org)
        assert client.get(V1 + "/agents", headers=app.as_key(key)).status_code == 401


def test_keys_are_stored_only_as_digests(app: App, org_key: tuple[str, str]) -> None:
    import sqlite3

    db = app.settings.data_dir / "memtrace.db"
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    assert org_key[1] not in dump
    assert org_key[1][4:20] not in dump


def test_another_org_sees_and_changes_nothing(
    app: App, api: TestClient, org_key: tuple[str, str]
) -> None:
    a = api  # org A's key is the default header
    mem = a.post(
        V1 + "/memories",
        json={
            "agent_id": "bot",
            "session_id": "sess_shared",
            "content": "secret A",
            "tags": ["t"],
            "dedup_key": "k-a",
        },
    ).json()
    agent = a.post(V1 + "/agents", json={"name": "alpha"}).json()
    session = a.post(
        V1 + "/sessions", json={"agent_id": agent["id"], "metadata": {"owner": "A"}}
    ).json()
    a.post(
        V1 + "/memories",
        json={"agent_id": "bot", "session_id": session["id"], "content": "in session"},
    )

    org_b = app.new_org("Other")
    b = app.as_key(app.new_key(org_b))
    c = app.client
    assert c.get(V1 + f"/memories/{mem['id']}", headers=b).status_code == 404
    assert c.get(V1 + "/memories/k-a", headers=b).status_code == 404
    assert c.get(V1 + "/memories", headers=b).json()["count"] == 0
    assert c.get(V1 + "/memories", params={"agent_id": "bot"}, headers=b).json()["count"] == 0
    assert (
        c.post(V1 + "/search", json={"content_contains": "secret"}, headers=b).json()["count"] == 0
    )
    assert c.post(V1 + "/search", json={"tags": ["t"]}, headers=b).json()["count"] == 0
    assert c.get(V1 + "/agents", headers=b).json()["count"] == 0
    assert c.get(V1 + f"/agents/{agent['id']}", headers=b).status_code == 404
    assert c.get(V1 + "/agents/alpha", headers=b).status_code == 404
    assert c.delete(V1 + f"/agents/{agent['id']}", headers=b).status_code == 404
    assert c.get(V1 + "/agents/bot/stats", headers=b).json()["memory_count"] == 0
    assert c.get(V1 + "/agents/bot/memories", headers=b).json()["count"] == 0
    assert c.get(V1 + "/sessions", headers=b).json()["count"] == 0
    assert c.get(V1 + f"/sessions/{session['id']}", headers=b).status_code == 404
    assert (
        c.put(V1 + f"/sessions/{session['id']}", json={"status": "closed"}, headers=b).status_code
        == 404
    )
    assert c.get(V1 + f"/sessions/{session['id']}/memories", headers=b).json()["count"] == 0
    assert c.get(V1 + "/sessions/sess_shared/memories", headers=b).json()["count"] == 0
    ctx = c.post(V1 + f"/sessions/{session['id']}/context", json={}, headers=b).json()
    assert ctx["memory_count"] == 0
    assert c.post(V1 + "/agents/bot/context", json={}, headers=b).json()["memory_count"] == 0
    # the same content is not a duplicate in another org, and names are per org
    assert (
        c.post(
            V1 + "/memories", json={"agent_id": "bot", "content": "secret A"}, headers=b
        ).status_code
        == 201
    )
    assert c.post(V1 + "/agents", json={"name": "alpha"}, headers=b).status_code == 201
    # a session in B naming A's agent id registers B's own agent, never A's
    other = c.post(V1 + "/sessions", json={"agent_id": agent["id"]}, headers=b).json()
    assert other["org_id"] == org_b
    assert c.get(V1 + f"/agents/{agent['id']}", headers=b).json()["org_id"] == org_b
    # org A is untouched
    still = a.get(V1 + f"/sessions/{session['id']}").json()
    assert still.pop("last_active_at")  # org A's own memory in it made it active
    assert still == session
    assert a.get(V1 + f"/agents/{agent['id']}").json() == agent
    assert a.get(V1 + "/memories").json()["count"] == 2
    assert a.get(V1 + "/agents/bot/stats").json()["memory_count"] == 2
    assert a.get(V1 + "/sessions").json()["count"] == 1
