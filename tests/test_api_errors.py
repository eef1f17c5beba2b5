"""Every error is a JSON ``{"error": ...}`` with a 4xx status; bad input changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from memtrace_server.api.app import create_app

from conftest import App, make_settings

V1 = "/api/v1"


def _assert_error(r: Any, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert set(body) <= {"error", "hint", "code"}
    return str(body["error"])


MALFORMED: list[tuple[str, str, Any, str]] = [
    # (method, path, json body or query params, expected message fragment)
    ("POST", "/memories", {"content": "x"}, "agent_id is required"),
    ("POST", "/memories", {"agent_id": "a"}, "content is required"),
    ("POST", "/memories", {"agent_id": "a", "content": ""}, "content is required"),
    ("POST", "/memories", {"agent_id": "1bad", "content": "x"}, "invalid agent_id"),
    ("POST", "/memories", {"agent_id": "a" * 129, "content": "x"}, "invalid agent_id"),
    (
        "POST",
        "/memories",
        {"agent_id": "a", "content": "x", "session_id": "bad id"},
        "invalid session_id",
    ),
    (
        "POST",
        "/memories",
        {"agent_id": "a", "content": "x", "memory_type": "semantic"},
        "invalid memory_type: semantic",
    ),
    (
        "POST",
        "/memories",
        {"agent_id": "a", "content": "x", "event_type": "page-crawled"},
        "invalid event_type",
    ),
    (
        "POST",
        "/memories",
        {"agent_id": "a", "content": "x", "tags": ["has space"]},
        "invalid tag 'has space'",
    ),
    (
        "POST",
        "/memories",
        {"agent_id": "a", "content": "x", "importance": 1.5},
        "invalid importance",
    ),
    (
        "POST",
        "/memories",
        {"agent_id": "a", "content": "x", "importance": -0.1},
        "invalid importance",
    ),
    ("POST", "/memories", {"agent_id": "a", "content": "x", "importance": "0.5"}, "importance"),
    ("POST", "/memories", {"agent_id": "a", "content": 123}, "content"),
    ("POST", "/memories", {"agent_id": 5, "content": "x"}, "agent_id"),
    ("POST", "/memories", {"agent_id": "a", "content": "x", "tags": "solo"}, "tags"),
    ("POST", "/memories", {"agent_id": "a", "content": "x", "metadata": [1, 2]}, "metadata"),
    ("POST", "/memories", {"agent_id": "a", "content": "x", "time": "yesterday"}, "invalid time"),
    (
        "POST",
        "/memories",
        {"agent_id": "a", "content": "x", "time": "2999-01-01T00:00:00Z"},
        "future",
    ),
    ("POST", "/memories", ["not", "an", "object"], "invalid request body"),
    ("POST", "/memories", {"memories": [{"agent_id": "a", "content": "x"}, "nope"]}, "memories[1]"),
    ("GET", "/memories", {"agent_id": "bad id!"}, "invalid agent_id"),
    ("GET", "/memories", {"session_id": "-x"}, "invalid session_id"),
    ("GET", "/memories", {"memory_type": "bad-type"}, "invalid memory_type"),
    ("GET", "/memories", {"tags": "ok,not ok"}, "invalid tag"),
    ("GET", "/memories", {"since": "2w3"}, "invalid since"),
    ("GET", "/memories", {"since": "0h"}, "invalid time window"),
    ("GET", "/memories", {"until": "whenever"}, "invalid until"),
    ("GET", "/memories", {"limit": "ten"}, "invalid limit"),
    ("GET", "/memories", {"offset": "1.5"}, "invalid offset"),
    ("POST", "/search", {"since": "90x"}, "invalid since"),
    ("POST", "/search", {"memory_types": "decision"}, "memory_types"),
    ("POST", "/search", {"memory_types": ["bad-type"]}, "invalid memory_type 'bad-type'"),
    ("POST", "/search", {"agent_id": "bad id"}, "invalid agent_id"),
    ("POST", "/search", {"limit": "many"}, "limit"),
    ("POST", "/search", {"order": "sideways"}, "order"),
    ("POST", "/search", {"min_importance": "high"}, "min_importance"),
    ("POST", "/agents", {"name": ["x"]}, "name"),
    ("POST", "/agents", {"name": "x", "config": "y"}, "config"),
    ("POST", "/sessions", {"agent_id": "x", "metadata": 3}, "metadata"),
    ("GET", "/sessions/bad id!", None, "invalid session_id"),
    ("PUT", "/sessions/sess_x", {"status": "paused"}, "status"),
    ("GET", "/sessions/bad id!/memories", None, "invalid session_id"),
    ("POST", "/sessions/bad id!/context", {}, "invalid session_id"),
    ("POST", "/sessions/sess_x/context", {"since": "forever"}, "invalid since"),
    ("POST", "/sessions/sess_x/context", {"max_tokens": -1}, "max_tokens"),
    ("POST", "/sessions/sess_x/context", {"include_types": ["no-no"]}, "include_type"),
    ("GET", "/agents/bad id!/stats", None, "invalid agent_id"),
    ("GET", "/agents/bad id!/memories", None, "invalid agent_id"),
    ("GET", "/agents/a1/memories", {"since": "1y"}, "invalid since"),
    # found by schemathesis: values JSON allows but storage cannot hold
    (
        "POST",
        "/agents",
        {"name": "n", "config": {"big": 8499236499688279364337664}},
        "invalid JSON object",
    ),
    (
        "POST",
        "/memories",
        {"agent_id": "a", "content": "x", "metadata": {"n": 2**70}},
        "invalid JSON object",
    ),
    ("POST", "/search", {"offset": 10**30}, "offset"),
    ("GET", "/memories", {"offset": str(10**30)}, "offset"),
    # strict list parameters: negative sizes and unknown orders are refused, on every list
    ("GET", "/memories", {"limit": "-5"}, "invalid limit"),
    ("GET", "/memories", {"offset": "-1"}, "invalid offset"),
    ("GET", "/memories", {"order": "sideways"}, "invalid order"),
    ("GET", "/agents/a1/memories", {"limit": "-1"}, "invalid limit"),
    ("GET", "/agents/a1/memories", {"order": "up"}, "invalid order"),
    ("GET", "/sessions/sess_x/memories", {"offset": "-3"}, "invalid offset"),
    ("GET", "/sessions/sess_x/memories", {"order": "random"}, "invalid order"),
    ("POST", "/search", {"limit": -5}, "limit"),
    ("POST", "/search", {"offset": -1}, "offset"),
]


@pytest.mark.parametrize(("method", "path", "payload", "fragment"), MALFORMED)
def test_malformed_input_is_400_and_changes_nothing(
    api: TestClient, method: str, path: str, payload: Any, fragment: str
) -> None:
    kwargs: dict[str, Any] = {}
    if method == "GET":
        kwargs["params"] = payload
    elif payload is not None:
        kwargs["json"] = payload
    r = api.request(method, V1 + path, **kwargs)
    assert fragment in _assert_error(r, 400)
    assert api.get(V1 + "/memories").json()["count"] == 0
    assert api.get(V1 + "/sessions").json()["count"] == 0
    assert api.get(V1 + "/agents").json()["count"] == 0


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"\xff\xfe", b'{"agent_id": "a", "content": "x"']
)
def test_unparsable_bodies_are_400(api: TestClient, raw: bytes) -> None:
    r = api.post(V1 + "/memories", content=raw, headers={"content-type": "application/json"})
    _assert_error(r, 400)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"agent_id": "a", "content": "half \\ud83d pair"}',
        b'{"agent_id": "a", "content": "\\ude00"}',
    ],
)
def test_unpaired_surrogates_are_400(api: TestClient, raw: bytes) -> None:
    r = api.post(V1 + "/memories", content=raw, headers={"content-type": "application/json"})
    assert "surrogate" in _assert_error(r, 400)
    paired = api.post(
        V1 + "/memories", content=b'{"agent_id": "a", "content": "smile \\ud83d\\ude00"}'
    )
    assert paired.status_code == 201 and paired.json()["content"] == "smile \U0001f600"


def test_body_without_json_content_type_is_still_json(api: TestClient) -> None:
    r = api.post(
        V1 + "/memories",
        content=b'{"agent_id": "a", "content": "curl"}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 201


def test_oversized_body_is_413_json(api: TestClient, app: App) -> None:
    limit = app.settings.max_body_bytes
    big = {"agent_id": "a", "content": "x" * (limit + 10)}
    msg = _assert_error(api.post(V1 + "/memories", json=big), 413)
    assert str(limit) in msg

    def chunks() -> Any:  # no content-length: the limit holds for streamed bodies too
        yield b'{"agent_id": "a", "content": "'
        for _ in range(limit // 65536 + 2):
            yield b"y" * 65536
        yield b'"}'

    _assert_error(api.post(V1 + "/memories", content=chunks()), 413)
    assert api.get(V1 + "/memories").json()["count"] == 0


def test_batch_over_limit_is_413(tmp_path: Any) -> None:
    from memtrace_server.api.app import create_app

    from conftest import make_settings

    settings = make_settings(tmp_path, max_batch=3)
    with TestClient(create_app(settings)) as client:
        app = App(client, settings)
        key = app.new_key(app.new_org())
        batch = {"memories": [{"agent_id": "a", "content": str(i)} for i in range(4)]}
        _assert_error(client.post(V1 + "/memories", json=batch, headers=app.as_key(key)), 413)


def test_error_shapes_on_every_path(app: App, api: TestClient, org_key: tuple[str, str]) -> None:
    plain = app.client
    assert (
        _assert_error(plain.get(V1 + "/memories", headers={"x-api-key": ""}), 401)
        == "missing API key"
    )
    assert (
        _assert_error(
            plain.get(V1 + "/memories", headers={"x-api-key": "mtk_" + "A" * 43 + "="}), 401
        )
        == "invalid API key"
    )
    reader = app.new_key(org_key[0], "read", name="reader")
    assert "write" in _assert_error(
        plain.post(
            V1 + "/memories", json={"agent_id": "a", "content": "x"}, headers=app.as_key(reader)
        ),
        403,
    )
    _assert_error(api.get(V1 + "/nothing-here"), 404)
    _assert_error(api.get(V1 + "/memories/mem_unknown"), 404)
    _assert_error(api.get(V1 + "/agents/unknown"), 404)
    _assert_error(api.get(V1 + "/sessions/sess_unknown"), 404)
    refused = api.delete(V1 + "/memories")
    _assert_error(refused, 405)
    # Starlette names the methods of the first route on the path (here POST, not GET too).
    assert set(refused.headers["allow"].split(", ")) <= {"GET", "POST"}
    api.post(V1 + "/memories", json={"agent_id": "a", "content": "x"})
    _assert_error(api.post(V1 + "/memories", json={"agent_id": "a", "content": "x"}), 409)
    api.post(V1 + "/agents", json={"name": "n"})
    _assert_error(api.post(V1 + "/agents", json={"name": "n"}), 409)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_nul_characters_are_refused_alike_on_both_backends(
    backend: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    from memtrace_server.api.app import create_app

    from conftest import make_settings

    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    settings = make_settings(tmp_path, store_url=url)
    with TestClient(create_app(settings)) as client:
        app = App(client, settings)
        h = app.as_key(app.new_key(app.new_org()))
        body = b'{"agent_id": "a", "content": "nul \\u0000 inside"}'
        assert "NUL" in _assert_error(client.post(V1 + "/memories", content=body, headers=h), 400)
        search = b'{"content_contains": "\\u0000"}'
        _assert_error(client.post(V1 + "/search", content=search, headers=h), 400)
        assert client.get(V1 + "/agents/a%00b", headers=h).status_code in (400, 404)
        assert client.get(V1 + "/memories/mem%00x", headers=h).status_code in (400, 404)
        assert client.get(V1 + "/memories", headers=h).json()["count"] == 0


def test_body_checks_apply_under_a_root_path(tmp_path: Path) -> None:
    """Mounted under a prefix, the app still refuses what it refuses at the root."""
    with TestClient(
        create_app(make_settings(tmp_path)), root_path="/memtrace", raise_server_exceptions=False
    ) as client:
        app = App(client, make_settings(tmp_path))
        key = app.new_key(app.new_org("Acme"))
        url = "/memtrace/api/v1/memories"
        nul = b'{"agent_id": "a", "content": "x\\u0000y"}'
        refused = client.post(url, content=nul, headers={"x-api-key": key})
        assert refused.status_code == 400 and "NUL" in refused.json()["error"]
        plain = client.post(
            url, content=b'{"agent_id": "a", "content": "fine"}', headers={"x-api-key": key}
        )
        assert plain.status_code == 201, plain.text
        listed = client.get(url, headers={"x-api-key": key}).json()
        assert [m["content"] for m in listed["memories"]] == ["fine"]
