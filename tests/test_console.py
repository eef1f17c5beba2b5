"""The console's rules in-process (the browser tests are in tests/console/): sessions live in
the store as digests, sign-in is throttled, every change needs its permission and the CSRF
token, and the console stays out of the OpenAPI document."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from memtrace_server.api.app import create_app
from memtrace_server.core.timefmt import now_ns

from conftest import App, make_settings

V1 = "/api/v1"
CHANGES = (
    "/ui/erase",
    "/ui/keys",
    "/ui/retention",
    "/ui/memories/mem_x/delete",
    "/ui/keys/1/revoke",
)


def login_token(client: TestClient) -> str:
    """The token the sign-in form carries (and its cookie holds)."""
    found = re.search(r'name="login_token" value="([^"]+)"', client.get("/ui/sign-in").text)
    assert found
    return found.group(1)


def post_sign_in(client: TestClient, key: str) -> Any:
    data = {"api_key": key, "login_token": login_token(client)}
    return client.post("/ui/sign-in", data=data, follow_redirects=False)


def sign_in(client: TestClient, key: str) -> str:
    """Sign in; the CSRF token of the new session."""
    r = post_sign_in(client, key)
    assert r.status_code == 303, r.text
    page = client.get("/ui/memories")
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def test_the_console_is_not_in_the_openapi_document_and_root_redirects(app: App) -> None:
    paths = app.client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/ui")]
    for path in ("/", "/ui"):
        r = app.client.get(path, follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "/ui/"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    r = app.client.get("/ui/memories", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/sign-in?next=")


def test_sessions_are_stored_as_digests_and_never_hold_the_key(app: App) -> None:
    key = app.new_key(app.new_org(), "read")
    sign_in(app.client, key)
    token = app.client.cookies["memtrace_console"]
    assert token != key and len(token) >= 40
    control = app.services.stores.control
    stored = app.call(control.get_console_session, hashlib.sha256(token.encode()).hexdigest())
    assert stored is not None and stored.key_digest == hashlib.sha256(key.encode()).hexdigest()
    assert app.call(control.get_console_session, token) is None
    db = (app.settings.data_dir / "memtrace.db").read_bytes()
    assert token.encode() not in db and key.encode() not in db


def test_an_idle_session_ends(app: App) -> None:
    key = app.new_key(app.new_org(), "read")
    sign_in(app.client, key)
    digest = hashlib.sha256(app.client.cookies["memtrace_console"].encode()).hexdigest()
    nine_hours_ago = now_ns() - 9 * 3600 * 10**9
    app.call(app.services.stores.control.touch_console_session, digest, nine_hours_ago)
    r = app.client.get("/ui/memories", follow_redirects=False)
    assert r.status_code == 303 and "/ui/sign-in" in r.headers["location"]
    assert app.call(app.services.stores.control.get_console_session, digest) is None


def test_failed_sign_ins_are_rate_limited_per_address(app: App) -> None:
    key = app.new_key(app.new_org(), "read")
    for _ in range(10):
        r = post_sign_in(app.client, "mtk_wrong")
        assert r.status_code == 401 and "not valid" in r.text
        assert "memtrace_console=" not in r.headers.get("set-cookie", "")
    r = post_sign_in(app.client, key)
    assert r.status_code == 429 and "retry-after" in r.headers
    assert "memtrace_console" not in app.client.cookies


def test_cookie_is_secure_over_https_or_when_configured(tmp_path: Path) -> None:
    for secure_setting, base in ((False, "https://testserver"), (True, "http://testserver")):
        settings = make_settings(
            tmp_path / str(secure_setting), console_secure_cookie=secure_setting
        )
        with TestClient(create_app(settings), base_url=base) as client:
            app = App(client, settings)
            key = app.new_key(app.new_org(), "read")
            r = post_sign_in(client, key)
            cookie = r.headers["set-cookie"].lower()
            assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_every_change_needs_the_permission_then_the_csrf_token(app: App) -> None:
    org = app.new_org()
    with_memory = app.client.post(
        V1 + "/memories",
        headers=app.as_key(app.new_key(org)),
        json={"agent_id": "a", "content": "keep me"},
    ).json()
    csrf = sign_in(app.client, app.new_key(org, "read"))
    for path in CHANGES:  # a read key: 403 even with the right token
        assert app.client.post(path, data={"csrf_token": csrf, "confirm": "yes"}).status_code == 403
    app.client.cookies.clear()
    csrf = sign_in(app.client, app.new_key(org, "read,write,admin"))
    for path in CHANGES:  # an admin key without the token: 403
        assert app.client.post(path, data={"agent_id": "a", "confirm": "yes"}).status_code == 403
    r = app.client.post("/ui/erase", data={"csrf_token": csrf})  # no filter: a clear 400
    assert r.status_code == 400 and "at least one filter" in r.text
    r = app.client.post("/ui/retention", data={"csrf_token": csrf, "days": "-3"})
    assert r.status_code == 400
    r = app.client.post("/ui/keys", data={"csrf_token": csrf, "name": " ", "perm_read": "1"})
    assert r.status_code == 400 and "must not be empty" in r.text
    headers = app.as_key(app.new_key(org))
    assert app.client.get(f"{V1}/memories/{with_memory['id']}", headers=headers).status_code == 200


def test_another_org_can_neither_read_nor_change(app: App) -> None:
    org_a, org_b = app.new_org("A"), app.new_org("B")
    key_a = app.new_key(org_a)
    session = app.client.post(V1 + "/sessions", headers=app.as_key(key_a), json={"agent_id": "bot"})
    memory = app.client.post(
        V1 + "/memories",
        headers=app.as_key(key_a),
        json={"agent_id": "bot", "session_id": session.json()["id"], "content": "secret of A"},
    ).json()
    admin_b = app.new_key(org_b, "read,write,admin")
    key_ids_a = [k.id for k in app.call(app.admin.list_keys, org_a)]
    csrf = sign_in(app.client, admin_b)
    for path in (
        f"/ui/memories/{memory['id']}",
        f"/ui/memories/{memory['id']}/delete",
        f"/ui/sessions/{session.json()['id']}",
        "/ui/agents/bot",
    ):
        assert app.client.get(path).status_code == 404, path
    assert (
        app.client.post(
            f"/ui/memories/{memory['id']}/delete", data={"csrf_token": csrf}
        ).status_code
        == 404
    )
    r = app.client.post(f"/ui/keys/{key_ids_a[0]}/revoke", data={"csrf_token": csrf})
    assert r.status_code == 404
    r = app.client.post("/ui/erase", data={"csrf_token": csrf, "agent_id": "bot", "confirm": "yes"})
    assert r.status_code == 200 and "Erased 0 memories" in r.text
    for path in ("/ui/", "/ui/memories", "/ui/sessions", "/ui/agents", "/ui/keys", "/ui/export"):
        page = app.client.get(path)
        assert page.status_code == 200 and "secret of A" not in page.text and org_a not in page.text
    assert (
        app.client.get(f"{V1}/memories/{memory['id']}", headers=app.as_key(key_a)).status_code
        == 200
    )
    assert app.client.get(V1 + "/agents", headers=app.as_key(key_a)).status_code == 200


def test_a_sign_in_posted_without_the_forms_token_is_refused(app: App) -> None:
    """Another site cannot sign this browser in with its own key (login CSRF)."""
    key = app.new_key(app.new_org(), "read")
    r = app.client.post("/ui/sign-in", data={"api_key": key}, follow_redirects=False)
    assert r.status_code == 403 and "sign in again" in r.text
    r = app.client.post(
        "/ui/sign-in", data={"api_key": key, "login_token": "guess"}, follow_redirects=False
    )
    assert r.status_code == 403
    assert "memtrace_console" not in app.client.cookies
    assert post_sign_in(app.client, key).status_code == 303


def test_sessions_are_shared_by_every_process_on_the_store(tmp_path: Path) -> None:
    """A session opened through one server is honoured, and ended, through another."""
    settings = make_settings(tmp_path)
    with (
        TestClient(create_app(settings)) as first,
        TestClient(create_app(settings)) as second,
    ):
        app = App(first, settings)
        csrf = sign_in(first, app.new_key(app.new_org(), "read"))
        second.cookies.update(first.cookies)
        assert second.get("/ui/memories").status_code == 200
        r = second.post("/ui/sign-out", data={"csrf_token": csrf}, follow_redirects=False)
        assert r.status_code == 303
        r = first.get("/ui/memories", follow_redirects=False)
        assert r.status_code == 303 and "/ui/sign-in" in r.headers["location"]


def test_every_page_renders_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    settings = make_settings(tmp_path, store_url=pg_url)
    with TestClient(create_app(settings)) as client:
        app = App(client, settings)
        key = app.new_key(app.new_org(), "read,write,admin")
        headers = app.as_key(key)
        session = client.post(V1 + "/sessions", headers=headers, json={"agent_id": "bot"}).json()
        memory = client.post(
            V1 + "/memories",
            headers=headers,
            json={"agent_id": "bot", "session_id": session["id"], "content": "<b>dark</b> mode"},
        ).json()
        csrf = sign_in(client, key)
        for path in (
            "/ui/",
            "/ui/memories?q=dark&recency_half_life=7d",
            f"/ui/memories/{memory['id']}",
            "/ui/agents",
            "/ui/agents/bot",
            "/ui/sessions",
            f"/ui/sessions/{session['id']}?max_tokens=10",
            "/ui/erase",
            "/ui/keys",
        ):
            page = client.get(path)
            assert page.status_code == 200, path
            assert "<b>dark</b>" not in page.text
        r = client.post("/ui/erase", data={"csrf_token": csrf, "agent_id": "bot"})
        assert r.status_code == 200 and 'dry-run-count">1<' in r.text
