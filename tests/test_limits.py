"""Limits and abuse: sizes, counts, per-key rate limit, CORS off unless configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from memtrace_server.api.app import create_app
from memtrace_server.core.errors import RateLimited
from memtrace_server.service.ratelimit import RateLimiter

from conftest import App, make_settings

V1 = "/api/v1"


def limited_app(tmp_path: Path, **overrides: Any) -> tuple[TestClient, App]:
    settings = make_settings(tmp_path, **overrides)
    client = TestClient(create_app(settings))
    return client, App(client, settings)


def test_content_metadata_and_tag_limits(tmp_path: Path) -> None:
    client, app = limited_app(tmp_path, max_content_bytes=1000, max_metadata_bytes=200, max_tags=3)
    with client:
        h = app.as_key(app.new_key(app.new_org()))
        big = client.post(V1 + "/memories", headers=h, json={"agent_id": "a", "content": "é" * 501})
        assert big.status_code == 413 and big.json() == {
            "error": "content is 1002 bytes; the limit is 1000"
        }
        meta = client.post(
            V1 + "/memories",
            headers=h,
            json={"agent_id": "a", "content": "x", "metadata": {"k": "v" * 300}},
        )
        assert meta.status_code == 413 and "metadata" in meta.json()["error"]
        tags = client.post(
            V1 + "/memories",
            headers=h,
            json={"agent_id": "a", "content": "x", "tags": ["a", "b", "c", "d"]},
        )
        assert tags.status_code == 400 and tags.json() == {"error": "4 tags; at most 3 are allowed"}
        batch = client.post(
            V1 + "/memories",
            headers=h,
            json={
                "memories": [
                    {"agent_id": "a", "content": "fine"},
                    {"agent_id": "a", "content": "y" * 1001},
                ]
            },
        )
        assert batch.status_code == 413 and batch.json()["error"].startswith(
            "failed to create memory 1:"
        )
        assert (
            client.post(
                V1 + "/memories", headers=h, json={"agent_id": "a", "content": "y" * 1000}
            ).status_code
            == 201
        )
        assert client.get(V1 + "/memories", headers=h).json()["count"] == 1


def test_rate_limit_per_key(tmp_path: Path) -> None:
    client, app = limited_app(tmp_path, rate_per_second=0.5, rate_burst=3)
    with client:
        org = app.new_org()
        first, second = app.as_key(app.new_key(org)), app.as_key(app.new_key(org))
        statuses = [client.get(V1 + "/agents", headers=first).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = client.get(V1 + "/agents", headers=first)
        assert limited.json() == {
            "error": "rate limit exceeded: 0.5 requests per second for this API key"
        }
        assert limited.headers["retry-after"] == "2"
        assert (
            client.get(V1 + "/agents", headers=second).status_code == 200
        )  # another key has its own bucket
        assert client.get("/health").status_code == 200  # unauthenticated probes are never limited


def test_token_bucket_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=2, clock=lambda: now[0])
    limiter.take("k")
    limiter.take("k")
    try:
        limiter.take("k")
    except RateLimited as exc:
        assert exc.retry_after == 1
    else:
        raise AssertionError("third request in the same instant was allowed")
    now[0] = 0.5  # one token back
    limiter.take("k")
    RateLimiter(rate=0, burst=1).take("k")  # 0 means off


def test_cors_is_off_unless_configured(tmp_path: Path) -> None:
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
    client, _ = limited_app(tmp_path / "off")
    with client:
        assert (
            "access-control-allow-origin"
            not in client.options(V1 + "/memories", headers=preflight).headers
        )
    client, _ = limited_app(tmp_path / "on", cors_origins="https://app.example")
    with client:
        allowed = client.options(V1 + "/memories", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
