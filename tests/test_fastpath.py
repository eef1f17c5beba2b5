"""The hot routes' fast path answers exactly as FastAPI does, and FastAPI still documents them.

Each comparison runs the same requests against two apps on their own stores, one serving
the hot routes from ``api.fastpath`` and one serving every route through FastAPI
(``create_app(..., fast_path=False)``), and requires the same status, headers and body;
only the values a request generates (ids, times, timings) may differ.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from memtrace_server.api import fastpath
from memtrace_server.api.app import create_app

from conftest import App, make_settings

V1 = "/api/v1"
ORG, OTHER_ORG = "org_twin", "org_other"
# Values a request generates; they differ between the two apps and are compared by shape.
GENERATED = {"id", "time", "query_time_ms", "uptime"}
GENERATED_TEXT = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z|mem_[0-9A-Za-z]+")


class Twins:
    """The same requests to a fast-path app and a FastAPI-only app; answers compared."""

    def __init__(self, fast: App, slow: App) -> None:
        self.apps = (fast, slow)
        self.keys: dict[str, tuple[str, str]] = {}
        self.ids: dict[str, tuple[str, str]] = {}

    def new_key(self, name: str, org: str = ORG, permissions: str = "read,write") -> None:
        pair = tuple(app.new_key(org, permissions, name=name) for app in self.apps)
        self.keys[name] = pair  # type: ignore[assignment]

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = "rw",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send to both; assert the answers match; return the fast app's response.

        ``{name}`` in the path is replaced by each app's memory id saved under ``name``.
        """
        answers = []
        for side, app in enumerate(self.apps):
            sent = dict(headers or {})
            if key is not None:
                sent["x-api-key"] = self.keys[key][side]
            url = path.format(**{name: ids[side] for name, ids in self.ids.items()})
            answers.append(app.client.request(method, url, headers=sent, **kwargs))
        fast, slow = answers
        assert fast.status_code == slow.status_code, (method, path, fast.text, slow.text)
        assert _headers(fast) == _headers(slow), (method, path)
        if fast.headers.get("content-type") == "application/json" and fast.content:
            assert _masked(fast.json()) == _masked(slow.json()), (method, path)
            assert "error" not in fast.json() or set(fast.json()) <= {"error", "hint", "code"}
        else:
            assert fast.content == slow.content
        return fast

    def remember(self, name: str, body: dict[str, Any], key: str = "rw") -> None:
        """Create a memory on both apps and keep both ids under ``name``."""
        ids = []
        for side, app in enumerate(self.apps):
            r = app.client.post(
                V1 + "/memories", json=body, headers={"x-api-key": self.keys[key][side]}
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        self.ids[name] = (ids[0], ids[1])


def _headers(response: Any) -> list[tuple[str, str]]:
    """Headers in order, without the clock's and with generated lengths and ids marked."""
    out = []
    for name, value in response.headers.multi_items():
        if name in ("date", "server"):
            continue
        if name == "content-length":
            assert response.request.method == "HEAD" or int(value) == len(response.content)
            value = "n"
        if name == "x-request-id" and value != "given-id":
            assert len(value) == 24
            value = "generated"
        out.append((name, value))
    return out


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (type(v).__name__ if k in GENERATED else _masked(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if isinstance(value, str):
        return GENERATED_TEXT.sub("<generated>", value)
    return value


def _twin_app(tmp_path: Path, fast_path: bool, **overrides: Any) -> Iterator[App]:
    settings = make_settings(tmp_path / ("fast" if fast_path else "slow"), **overrides)
    app = create_app(settings, fast_path=fast_path)
    with TestClient(app, raise_server_exceptions=False) as client:
        twin = App(client, settings)
        for org in (ORG, OTHER_ORG):
            twin.call(twin.admin.create_org, org, org_id=org)
        yield twin


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[Twins]:
    fast, slow = _twin_app(tmp_path, True), _twin_app(tmp_path, False)
    pair = Twins(next(fast), next(slow))
    pair.new_key("rw")
    pair.new_key("reader", permissions="read")
    pair.new_key("writer", permissions="write")
    pair.new_key("other", org=OTHER_ORG)
    yield pair
    for gen in (fast, slow):
        next(gen, None)


def test_the_hot_routes_run_on_the_fast_path(twins: Twins, monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[str] = []
    respond = fastpath.FastRoute.respond

    async def counting(self: fastpath.FastRoute, *args: Any) -> Any:
        served.append(self.template)
        return await respond(self, *args)

    monkeypatch.setattr(fastpath.FastRoute, "respond", counting)
    twins.remember("m", {"agent_id": "a", "content": "x", "session_id": "s1"})
    served.clear()
    for method, path in [
        ("POST", V1 + "/memories"),
        ("GET", V1 + "/memories"),
        ("GET", V1 + "/memories/{m}"),
        ("POST", V1 + "/search"),
        ("GET", V1 + "/sessions/s1/memories"),
        ("POST", V1 + "/sessions/s1/context"),
        ("GET", V1 + "/agents/a/memories"),
        ("POST", V1 + "/agents/a/context"),
        ("GET", V1 + "/agents/a/stats"),
    ]:
        twins.request(method, path, json={"agent_id": "a", "content": "y"})
    assert served == [
        "/api/v1/memories",
        "/api/v1/memories",
        "/api/v1/memories/{memory_id}",
        "/api/v1/search",
        "/api/v1/sessions/{session_id}/memories",
        "/api/v1/sessions/{session_id}/context",
        "/api/v1/agents/{agent_id}/memories",
        "/api/v1/agents/{agent_id}/context",
        "/api/v1/agents/{agent_id}/stats",
    ]
    served.clear()
    # everything else is FastAPI's: other methods, other paths, a trailing slash
    for method, path in [
        ("HEAD", V1 + "/memories"),
        ("OPTIONS", V1 + "/memories"),
        ("DELETE", V1 + "/memories"),
        ("PUT", V1 + "/search"),
        ("GET", V1 + "/memories/"),
        ("GET", V1 + "/memories/{m}/versions"),
        ("GET", V1 + "/sessions/s1/context"),
        ("GET", V1 + "/agents"),
        ("GET", "/health"),
    ]:
        twins.request(method, path, follow_redirects=False)
    assert served == []


def test_each_plan_takes_the_parameters_the_document_declares(app: App) -> None:
    spec = app.client.get("/openapi.json").json()
    table = fastpath.hot_routes()
    for route in table.routes:
        for method in route.methods:
            operation = spec["paths"][route.template][method.lower()]
            declared = {p["name"]: p["in"] for p in operation.get("parameters", [])}
            planned = {name: "path" for name in route.path_names} | {
                q.alias: "query"
                for q in [*route.query, *(q for d in route.dependencies for q in d.query)]
            }
            assert planned == {k: v for k, v in declared.items() if v in ("path", "query")}
            body = operation.get("requestBody")
            assert (route.body is not None) == (body is not None)
            if body is not None and route.body is not None:
                assert route.body.required == body.get("required", False)
            assert {d.permission for d in route.dependencies} - {None} <= {"read", "write"}


BODIES = [
    b"",
    b"null",
    b"[]",
    b'"text"',
    b"42",
    b"{",
    b"{not json",
    b'{"agent_id": "a", "content": "x"',
    b'{"agent_id": "a", "content": "x"}{',
    b"\xff\xfe",
    b'{"agent_id": "a", "content": "\xff"}',
    b'{"agent_id": "a", "content": "raw \xed\xa0\x80 surrogate"}',
    '{"agent_id": "a", "content": "utf-16"}'.encode("utf-16"),
    b'\xef\xbb\xbf{"agent_id": "a", "content": "bom"}',
    b'{"agent_id": "a", "content": "x", "importance": NaN}',
    b'{"agent_id": "a", "content": "x", "metadata": {"n": NaN, "i": -Infinity}}',
    b'{"agent_id": "a", "content": "x", "metadata": {"big": 1e400}}',
    b'{"agent_id": "a", "content": "tab\tinside"}',
    b'{"agent_id": "a", "content": "x", "content": "last wins"}',
    b'{"agent_id": "a", "content": "x", "tags": "solo"}',
    b'{"memories": []}',
    b'{"memories": [{"agent_id": "a", "content": "x"}, "nope"]}',
    b'{"memories": [{"agent_id": "a", "content": "one"}, {"agent_id": "a", "content": "one"}]}',
    b'{"since": "90x", "limit": -1}',
    b'{"limit": "many", "order": "sideways"}',
    b'{"max_tokens": -1}',
    b'{"include_types": ["no-no"], "query": "x", "mode": "hybrid"}',
    b'{"query": "invoices", "explain": true, "metadata": {"plan": "pro"}}',
    b'{"metadata": {"a": {"nested": 1}}}',
    b"[" * 5000 + b"]" * 5000,
    b'{"agent_id": "a", "content": "deep", "metadata": ' + b'{"k": ' * 2000 + b"1" + b"}" * 2001,
]


@pytest.mark.parametrize(
    "path",
    ["/memories", "/search", "/sessions/sess_1/context", "/agents/agent_1/context"],
)
def test_bodies_of_every_kind_get_the_same_answer(twins: Twins, path: str) -> None:
    for raw in BODIES:
        answer = twins.request("POST", V1 + path, content=raw)
        assert answer.status_code < 500, (raw[:60], answer.text)
    # a content type that is not JSON changes nothing: every API body is JSON
    twins.request("POST", V1 + path, content=b'{"agent_id": "a", "content": "c"}')
    twins.request(
        "POST",
        V1 + path,
        content=b'{"agent_id": "a", "content": "form"}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    twins.request("POST", V1 + path, content=b"{}", headers={"content-type": "text/plain"})


@pytest.mark.parametrize(
    "raw",
    [
        b'{"agent_id": "a", "content": "raw \xed\xa0\x80 surrogate"}',
        b'{"agent_id": "a", "content": "pair \xed\xa0\xbd\xed\xb8\x80 encoded"}',
        b'{"agent_id": "a", "content": "x", "tags": ["\xed\xbf\xbf"]}',
    ],
)
def test_surrogates_encoded_as_bytes_are_refused_and_change_nothing(
    twins: Twins, raw: bytes
) -> None:
    """Not UTF-8, though the JSON parsers let them into a string (where encoding it again
    failed with a 500): a 400 on every path, and nothing stored."""
    for path in ("/memories", "/search", "/sessions/s/context", "/agents/a/context"):
        answer = twins.request("POST", V1 + path, content=raw)
        assert answer.status_code == 400, (path, answer.text)
        assert "UTF-8" in answer.json()["error"]
    assert twins.request("GET", V1 + "/memories").json()["count"] == 0


def test_middleware_refusals_are_the_same(twins: Twins) -> None:
    limit = twins.apps[0].settings.max_body_bytes
    for path in ("/memories", "/search", "/agents/a/context"):
        twins.request("POST", V1 + path, content=b'{"content": "' + b"x" * limit + b'"}')
        twins.request("POST", V1 + path, content=b'{"agent_id": "a", "content": "\\ud83d"}')
        twins.request("POST", V1 + path, content=b'{"agent_id": "a", "content": "\\u0000"}')


QUERIES: list[dict[str, str] | str] = [
    {},
    {"limit": "-5"},
    {"limit": "ten"},
    {"limit": ""},
    {"limit": "1001"},
    {"limit": str(10**30)},
    {"offset": "1.5"},
    {"order": "sideways"},
    {"order": "asc", "limit": "1"},
    {"include_superseded": "maybe"},
    {"include_superseded": "yes"},
    {"agent_id": "bad id!"},
    {"session_id": "-x"},
    {"memory_type": "bad-type"},
    {"tags": "ok,not ok"},
    {"since": "2w3"},
    {"since": "0h"},
    {"until": "whenever"},
    {"metadata": "{not json"},
    {"metadata": '{"plan": "pro"}'},
    {"key": "k" * 300},
    "limit=1&limit=-1",
    "limit=-1&limit=1&order=up&offset=x",
    "agent_id=a&agent_id=b",
    "tags=a&tags=b,c",
    "%ff=1&limit=%ff",
    "since=&until=&tags=",
]


@pytest.mark.parametrize("path", ["/memories", "/sessions/s/memories", "/agents/a/memories"])
def test_list_queries_get_the_same_answer(twins: Twins, path: str) -> None:
    twins.remember(
        "m", {"agent_id": "a", "session_id": "s", "content": "x", "tags": ["t"], "key": "k"}
    )
    for query in QUERIES:
        twins.request("GET", V1 + path, params=query)
        twins.request("GET", V1 + path, params=query, key="other")
        twins.request("GET", V1 + path, params=query, key=None)
    for bad in ("/sessions/bad%20id!/memories", "/agents/-x/memories", "/agents/a%00/stats"):
        twins.request("GET", V1 + bad)


def test_keys_permissions_and_request_ids_get_the_same_answer(twins: Twins) -> None:
    twins.remember("m", {"agent_id": "a", "content": "x", "session_id": "s"})
    routes = [
        ("POST", V1 + "/memories", {"agent_id": "a", "content": "new"}),
        ("GET", V1 + "/memories", None),
        ("GET", V1 + "/memories/{m}", None),
        ("POST", V1 + "/search", {}),
        ("GET", V1 + "/sessions/s/memories", None),
        ("POST", V1 + "/sessions/s/context", {}),
        ("GET", V1 + "/agents/a/memories", None),
        ("POST", V1 + "/agents/a/context", None),
        ("GET", V1 + "/agents/a/stats", None),
    ]
    for method, path, body in routes:
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        twins.request(method, path, key=None, **kwargs)
        twins.request(method, path, key=None, headers={"x-api-key": ""}, **kwargs)
        twins.request(method, path, key=None, headers={"x-api-key": "mtk_" + "A" * 43}, **kwargs)
        twins.request(method, path, key=None, headers={"authorization": "Bearer mtk_x"}, **kwargs)
        twins.request(method, path, key=None, headers={"authorization": "Basic eDp5"}, **kwargs)
        twins.request(method, path, key="reader", **kwargs)
        twins.request(method, path, key="writer", **kwargs)
        twins.request(method, path, key=None, content=b"{")
        twins.request(method, path, headers={"x-request-id": "given-id"}, **kwargs)
        twins.request(method, path, headers={"x-request-id": "not valid!"}, **kwargs)
    # a bad key and a bad body: the body is decoded first, validated after the key
    twins.request("POST", V1 + "/memories", key=None, content=b"{")
    twins.request("POST", V1 + "/memories", key=None, json={"agent_id": 5})
    twins.request("GET", V1 + "/memories", key=None, params={"limit": "-1"})
    # a key that sends both headers: x-api-key wins, as in FastAPI
    for side, app in enumerate(twins.apps):
        r = app.client.get(
            V1 + "/memories",
            headers={"x-api-key": twins.keys["rw"][side], "authorization": "Bearer nope"},
        )
        assert r.status_code == 200


@pytest.mark.parametrize("path", ["/memories", "/memories/mem_x", "/agents/a/context", "/search"])
def test_rate_limits_are_the_same(tmp_path: Path, path: str) -> None:
    fast = _twin_app(tmp_path, True, rate_per_second=0.5, rate_burst=3)
    slow = _twin_app(tmp_path, False, rate_per_second=0.5, rate_burst=3)
    twins = Twins(next(fast), next(slow))
    twins.new_key("rw")
    method = "GET" if path.startswith("/memories") else "POST"
    answers = [twins.request(method, V1 + path, json={}) for _ in range(5)]
    assert [a.status_code for a in answers][-2:] == [429, 429]
    assert answers[-1].headers["retry-after"] == "2"
    for gen in (fast, slow):
        next(gen, None)


HOSTILE = [
    "<script>alert('x')</script>",
    "'; DROP TABLE memories;--",
    "Ünïcødé ✓ 😀 \u202etxet lanoitcerid\u202c",
    "\x01\x02\x1f control \x7f",
    "line\nbreak\r\nand\ttab",
    '{"json": "inside"}',
    "%s %d {0} {{}} ${HOME}",
    "x" * 20_000,
    "\\u0041 is not A",
    "\ufeff BOM and \u200b zero width",
]


def test_hostile_content_round_trips_the_same(twins: Twins) -> None:
    for n, content in enumerate(HOSTILE):
        body = {
            "agent_id": "agent_h",
            "session_id": "sess_h",
            "content": content,
            "metadata": {content[:50]: content[:100], "n": n, "list": [content[:10], None]},
            "tags": ["h", f"t{n}"],
        }
        twins.request("POST", V1 + "/memories", json=body)
        twins.remember(f"h{n}", {**body, "content": "again " + content})
        twins.request("GET", V1 + f"/memories/{{h{n}}}")
    twins.request("GET", V1 + "/memories", params={"agent_id": "agent_h", "limit": "50"})
    twins.request("POST", V1 + "/search", json={"content_contains": "<script>"})
    twins.request("POST", V1 + "/search", json={"query": "DROP TABLE", "explain": True})
    twins.request("POST", V1 + "/sessions/sess_h/context", json={"max_tokens": 5000})
    twins.request("GET", V1 + "/sessions/sess_h/memories", params={"order": "asc"})
    twins.request("GET", V1 + "/agents/agent_h/memories", params={"since": "1h"})
    twins.request("GET", V1 + "/agents/agent_h/stats")
    twins.request("POST", V1 + "/agents/agent_h/context", json={"query": "script"})
    twins.request("GET", V1 + "/memories/<script>")
    twins.request("GET", V1 + "/memories/" + "%00" * 3)
    twins.request("GET", V1 + "/memories/" + "x" * 300)


def test_another_orgs_key_reads_nothing_on_any_hot_route(twins: Twins) -> None:
    secret = "the launch code is 0000"
    body = {"agent_id": "spy_target", "session_id": "sess_secret", "content": secret}
    twins.remember("secret", body)
    twins.remember("keyed", {**body, "content": secret + " v2", "dedup_key": "secret-key"})
    answers = [
        twins.request("GET", V1 + "/memories/{secret}", key="other"),
        twins.request("GET", V1 + "/memories/secret-key", key="other"),
        twins.request("GET", V1 + "/memories", key="other"),
        twins.request("GET", V1 + "/memories", params={"agent_id": "spy_target"}, key="other"),
        twins.request("POST", V1 + "/search", json={"query": "launch code"}, key="other"),
        twins.request("POST", V1 + "/search", json={"agent_id": "spy_target"}, key="other"),
        twins.request("POST", V1 + "/sessions/sess_secret/context", json={}, key="other"),
        twins.request("POST", V1 + "/agents/spy_target/context", key="other"),
        twins.request("GET", V1 + "/sessions/sess_secret/memories", key="other"),
        twins.request("GET", V1 + "/agents/spy_target/memories", key="other"),
        twins.request("GET", V1 + "/agents/spy_target/stats", key="other"),
    ]
    assert [a.status_code for a in answers[:2]] == [404, 404]
    for answer in answers:
        assert secret not in answer.text
    assert answers[2].json()["count"] == 0 and answers[4].json()["count"] == 0
    assert answers[6].json()["memory_count"] == 0 == answers[7].json()["memory_count"]
    assert answers[8].json()["count"] == 0 == answers[9].json()["count"]
    assert answers[10].json()["memory_count"] == 0
    # and the owner does see it, on the same routes
    assert secret in twins.request("GET", V1 + "/memories/{secret}").text
    assert secret in twins.request("POST", V1 + "/sessions/sess_secret/context", json={}).text


def test_metrics_and_access_log_label_fast_routes_like_fastapi(twins: Twins) -> None:
    twins.remember("m", {"agent_id": "a", "content": "x"})
    twins.request("GET", V1 + "/memories/{m}")
    twins.request("GET", V1 + "/memories/mem_missing")
    twins.request("POST", V1 + "/agents/a/context", content=b"{")
    twins.request(
        "POST", V1 + "/memories", content=b"x" * (twins.apps[0].settings.max_body_bytes + 1)
    )
    texts = [app.client.get("/metrics").text for app in twins.apps]
    lines = [
        sorted(ln for ln in text.splitlines() if ln.startswith("memtrace_http_requests_total"))
        for text in texts
    ]
    assert lines[0] == lines[1]
    assert any('route="/api/v1/agents/{agent_id}/context",status="400"' in ln for ln in lines[0])
    assert any('route="unmatched",status="413"' in ln for ln in lines[0])


def test_dependency_overrides_still_apply(app: App) -> None:
    """An app whose dependencies are overridden (in an embedder's tests, say) is served by
    FastAPI, which applies the overrides."""
    from memtrace_server.api.deps import reader
    from memtrace_server.service.auth import Principal

    org = app.new_org()
    app.client.app.dependency_overrides[reader] = lambda: Principal(  # type: ignore[attr-defined]
        org, None, frozenset({"read"})
    )
    try:
        assert app.client.get(V1 + "/memories").json()["count"] == 0
        assert app.client.post(V1 + "/search", json={}).status_code == 200
    finally:
        app.client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
    assert app.client.get(V1 + "/memories").status_code == 401


def test_cors_applies_to_the_fast_path_alike(tmp_path: Path) -> None:
    fast = _twin_app(tmp_path, True, cors_origins="https://app.example")
    slow = _twin_app(tmp_path, False, cors_origins="https://app.example")
    twins = Twins(next(fast), next(slow))
    twins.new_key("rw")
    origin = {"origin": "https://app.example"}
    created = twins.request(
        "POST", V1 + "/memories", json={"agent_id": "a", "content": "x"}, headers=origin
    )
    assert created.headers["access-control-allow-origin"] == "https://app.example"
    twins.request("GET", V1 + "/memories", headers={"origin": "https://elsewhere.example"})
    twins.request(
        "OPTIONS",
        V1 + "/search",
        key=None,
        headers={**origin, "access-control-request-method": "POST"},
    )
    for gen in (fast, slow):
        next(gen, None)


def test_an_unexpected_failure_is_the_same_json_500(
    twins: Twins, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug below a route (here, a store call that raises) answers the API's JSON 500 with
    the request id, on a hot route and on one FastAPI serves alike, and is logged."""
    from memtrace_server.storage.sqlite import SQLiteStore

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(SQLiteStore, "query_memories", broken)
    monkeypatch.setattr(SQLiteStore, "list_agents", broken)
    for path in (V1 + "/memories", V1 + "/agents"):
        r = twins.request("GET", path)
        assert r.status_code == 500
        assert r.json() == {"error": "internal server error"}
        assert r.headers["x-request-id"]
    failures = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert len(failures) == 4 and all(r.exc_info for r in failures)
