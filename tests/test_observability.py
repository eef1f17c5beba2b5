"""Access log lines, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from memtrace_server.api.app import create_app
from memtrace_server.logs import PIPE_BUF, AccessLog, JSONFormatter, configure_logging

from conftest import App, make_settings

OPENAPI = Path(__file__).parent / "fixtures" / "openapi.json"


def test_one_log_line_per_request_without_secrets(
    api: TestClient, org_key: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "the launch code is 0000"
    with caplog.at_level(logging.INFO, logger="memtrace.access"):
        r = api.post(
            "/api/v1/memories",
            json={"agent_id": "a", "content": secret},
            headers={"x-request-id": "req-123"},
        )
        api.get("/api/v1/memories", params={"agent_id": "a", "tags": "private-tag"})
    assert r.headers["x-request-id"] == "req-123"
    records = [rec for rec in caplog.records if rec.name == "memtrace.access"]
    assert len(records) == 2
    lines = [json.loads(JSONFormatter().format(rec)) for rec in records]
    assert lines[0]["method"] == "POST" and lines[0]["path"] == "/api/v1/memories"
    assert lines[0]["status"] == 201 and lines[0]["request_id"] == "req-123"
    assert isinstance(lines[0]["latency_ms"], float)
    # a generated id: unique per request, and what the response header says
    assert re.fullmatch(r"[0-9a-f]{24}", lines[1]["request_id"])
    again = api.get("/api/v1/memories").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{24}", again) and again != lines[1]["request_id"]
    text = "\n".join(JSONFormatter().format(rec) for rec in caplog.records)
    assert secret not in text and org_key[1] not in text and "private-tag" not in text


@pytest.fixture
def server_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], io.StringIO]]:
    """Configures logging as ``memtrace serve`` does, onto a stderr of its own, when the
    test calls it (in its body: pytest swaps stderr and adds handlers of its own to a
    non-propagating logger as a test starts); restored after."""
    root = logging.getLogger("memtrace")
    saved = (root.handlers[:], root.level, root.propagate)

    def configure() -> io.StringIO:
        stream = io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        configure_logging("info", "json")
        return stream

    yield configure
    root.handlers[:], root.level, root.propagate = saved
    logging.getLogger("memtrace.access").filters.clear()


def _lines(app: App, stream: io.StringIO) -> list[dict[str, object]]:
    app.call(lambda: None)  # a turn of the app's loop: the access lines are written by then
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_the_servers_access_lines_are_one_json_object_a_request(
    app: App, server_log: Callable[[], io.StringIO]
) -> None:
    """As ``memtrace serve`` logs: the lines, written a loop turn at a time, are the JSON
    objects the formatter makes of any record, in the order the requests ended."""
    stream = server_log()
    org = app.new_org()
    key = app.new_key(org)
    secret = "the launch code is 0000"
    created = app.client.post(
        "/api/v1/memories",
        json={"agent_id": "a", "content": secret},
        headers={"x-api-key": key, "x-request-id": "req-1"},
    )
    app.client.get("/api/v1/memories/" + created.json()["id"], headers={"x-api-key": key})
    app.client.get("/api/v1/agents", headers={"x-api-key": key})  # served by FastAPI
    lines = _lines(app, stream)
    assert [(x["method"], x["path"], x["status"]) for x in lines] == [
        ("POST", "/api/v1/memories", 201),
        ("GET", "/api/v1/memories/" + created.json()["id"], 200),
        ("GET", "/api/v1/agents", 200),
    ]
    record = logging.makeLogRecord(
        {"name": "memtrace.access", "levelname": "INFO", "msg": "request", **lines[0]}
    )
    record.created = 0.0
    made = json.loads(JSONFormatter().format(record))
    assert list(lines[0]) == list(made)  # the same fields, in the same order
    assert lines[0]["request_id"] == "req-1" and isinstance(lines[0]["latency_ms"], float)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(x["ts"])) for x in lines)
    assert secret not in stream.getvalue() and key not in stream.getvalue()


def test_a_filter_on_the_access_logger_still_applies(
    app: App, server_log: Callable[[], io.StringIO]
) -> None:
    """Lines go past ``logging`` only where nothing but the server's handler would see them."""
    stream = server_log()
    logging.getLogger("memtrace.access").addFilter(lambda r: r.__dict__.get("status") != 404)
    app.client.get("/api/v1/nowhere")
    app.client.get("/health")
    assert [x["path"] for x in _lines(app, stream)] == ["/health"]


def test_metrics_count_requests_by_route_and_memories(api: TestClient) -> None:
    api.post(
        "/api/v1/memories",
        json={"memories": [{"agent_id": "a", "content": str(i)} for i in range(3)]},
    )
    api.post("/api/v1/memories", json={"agent_id": "a", "content": "0"})  # duplicate
    api.get("/api/v1/memories/mem_nope")
    text = api.get("/metrics").text
    assert (
        'memtrace_http_requests_total{method="POST",route="/api/v1/memories",status="201"} 1.0'
        in text
    )
    assert (
        'memtrace_http_requests_total{method="POST",route="/api/v1/memories",status="409"} 1.0'
        in text
    )
    assert (
        'memtrace_http_requests_total{method="GET",route="/api/v1/memories/{memory_id}",status="404"} 1.0'
        in text
    )
    assert "memtrace_memories_written_total 3.0" in text
    assert "memtrace_memories_duplicate_total 1.0" in text
    assert (
        'memtrace_http_request_duration_seconds_bucket{le="5.0",method="POST",route="/api/v1/memories"} 2.0'
        in text
    )


def test_openapi_documents_every_route_and_field(app: App) -> None:
    spec = app.client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
        ("/api/v1/memories", "post"),
        ("/api/v1/memories", "get"),
        ("/api/v1/memories/{memory_id}", "get"),
        ("/api/v1/memories/{memory_id}/versions", "get"),
        ("/api/v1/search", "post"),
        ("/api/v1/memories/{memory_id}", "delete"),
        ("/api/v1/memories/delete", "post"),
        ("/api/v1/export", "get"),
        ("/api/v1/agents/{agent_id}", "patch"),
        ("/api/v1/sessions/{session_id}", "delete"),
        ("/api/v1/agents", "post"),
        ("/api/v1/agents", "get"),
        ("/api/v1/agents/{agent_id}", "get"),
        ("/api/v1/agents/{agent_id}", "delete"),
        ("/api/v1/agents/{agent_id}/stats", "get"),
        ("/api/v1/agents/{agent_id}/memories", "get"),
        ("/api/v1/agents/{agent_id}/context", "post"),
        ("/api/v1/sessions", "post"),
        ("/api/v1/sessions", "get"),
        ("/api/v1/sessions/{session_id}", "get"),
        ("/api/v1/sessions/{session_id}", "put"),
        ("/api/v1/sessions/{session_id}/memories", "get"),
        ("/api/v1/sessions/{session_id}/context", "post"),
    }
    assert {(p, m) for p, ops in paths.items() for m in ops} == expected
    schemas = spec["components"]["schemas"]
    for name in (
        "CreateMemoryRequest",
        "SearchRequest",
        "ContextRequest",
        "RegisterAgentRequest",
        "CreateSessionRequest",
        "UpdateSessionRequest",
        "EraseRequest",
        "UpdateAgentRequest",
    ):
        for field, prop in schemas[name]["properties"].items():
            assert prop.get("description"), f"{name}.{field} has no description"
    create = paths["/api/v1/memories"]["post"]
    assert "201" in create["responses"] and "409" in create["responses"]
    assert {"APIKeyHeader", "HTTPBearer"} <= set(spec["components"]["securitySchemes"])
    assert app.client.get("/docs").status_code == 200


def test_openapi_document_is_unchanged(app: App) -> None:
    """The served document equals the stored copy: serving routes differently (the hot
    routes' fast path) or refactoring them must not change what FastAPI documents.

    After a deliberate change to the API's declarations, regenerate the stored copy:
    ``cd tests && python -c "from test_observability import write_openapi; write_openapi()"``,
    and review its diff.
    """
    served = app.client.get("/openapi.json").json()
    stored = json.loads(OPENAPI.read_text())
    # the version is the package's: a release changes it, nothing else
    served["info"]["version"] = stored["info"]["version"]
    served_text = json.dumps(served, indent=1)
    stored_text = json.dumps(stored, indent=1)
    if served_text != stored_text:
        diff = [
            f"line {n}: served {a!r} stored {b!r}"
            for n, (a, b) in enumerate(
                zip(served_text.splitlines(), stored_text.splitlines(), strict=False)
            )
            if a != b
        ]
        pytest.fail("openapi.json changed:\n" + "\n".join(diff[:20] or ["(length differs)"]))


def write_openapi() -> None:
    """Regenerate the stored OpenAPI document from the current declarations."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        spec = create_app(make_settings(Path(tmp))).openapi()
    OPENAPI.write_text(json.dumps(spec, indent=1) + "\n")


def test_a_loop_turns_lines_go_out_in_whole_lines_of_at_most_a_pipes_atomic_write(
    monkeypatch: pytest.MonkeyPatch, server_log: Callable[[], io.StringIO]
) -> None:
    """With ``--workers`` the processes share stderr, often a pipe: a write of more than
    PIPE_BUF bytes could take another process's line into the middle of one of ours."""
    writes: list[str] = []

    class Recording(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return super().write(text)

    server_log()
    monkeypatch.setattr(sys, "stderr", Recording())
    configure_logging("info", "json")
    access = AccessLog(logging.getLogger("memtrace.access"))

    async def turn() -> None:
        for i in range(40):
            access.request(f"req-{i}", "GET", "/api/v1/memories/" + "m" * 100, 200, 0.5)
        await asyncio.sleep(0)  # the next turn: written by now

    asyncio.run(turn())
    assert 1 < len(writes) < 40
    assert all(len(w.encode()) <= PIPE_BUF and w.endswith("\n") for w in writes)
    lines = [json.loads(line) for line in "".join(writes).splitlines()]
    assert [x["request_id"] for x in lines] == [f"req-{i}" for i in range(40)]
