"""Memories over HTTP against the real app and a real SQLite file."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from memtrace_server.api.app import create_app

from conftest import App, make_settings

V1 = "/api/v1"
HOUR = timedelta(hours=1)


def _iso(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_create_returns_reference_shape_with_id(api: TestClient, org_key: tuple[str, str]) -> None:
    r = api.post(
        "/api/v1/memories", json={"agent_id": "agent_1", "content": "User prefers dark mode"}
    )
    assert r.status_code == 201
    body = r.json()
    assert list(body) == [
        "id",
        "time",
        "org_id",
        "agent_id",
        "memory_type",
        "event_type",
        "content",
        "dedup_key",
    ]
    assert body["id"].startswith("mem_")
    assert body["org_id"] == org_key[0]
    assert body["memory_type"] == "episodic" and body["event_type"] == "general"
    assert body["dedup_key"] == "e81f1de3b743bacd47421867ad0574e4"
    assert body["time"].endswith("Z")
    fetched = api.get(f"/api/v1/memories/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == body


def test_full_fields_round_trip(api: TestClient) -> None:
    payload = {
        "agent_id": "crawler",
        "session_id": "sess_abc",
        "memory_type": "entity",
        "event_type": "page_crawled",
        "content": "Ünïcødé ✓ <script>'; DROP TABLE memories;--",
        "metadata": {"url": "https://example.com", "nested": {"n": [1, 2]}},
        "tags": ["crawling", "web.v2"],
        "importance": 0.7,
        "parent_id": "mem_parent",
        "dedup_key": "custom-key",
    }
    created = api.post("/api/v1/memories", json=payload).json()
    for field, value in payload.items():
        assert created[field] == value, field
    listed = api.get("/api/v1/memories", params={"agent_id": "crawler"}).json()
    assert listed["memories"] == [created]
    by_key = api.get("/api/v1/memories/custom-key").json()
    assert by_key["id"] == created["id"]


def test_duplicate_within_window_is_409_and_not_stored(api: TestClient) -> None:
    first = api.post("/api/v1/memories", json={"agent_id": "a", "content": "same"})
    assert first.status_code == 201
    again = api.post(
        "/api/v1/memories", json={"agent_id": "a", "content": "same", "session_id": "other"}
    )
    assert again.status_code == 409
    assert again.json() == {"error": "duplicate memory"}
    other_event = api.post(
        "/api/v1/memories", json={"agent_id": "a", "content": "same", "event_type": "note"}
    )
    assert other_event.status_code == 201
    assert api.get("/api/v1/memories", params={"agent_id": "a"}).json()["count"] == 2


def test_backfilled_memories_dedup_against_their_own_time(api: TestClient) -> None:
    old = _iso(-timedelta(days=10))
    r1 = api.post("/api/v1/memories", json={"agent_id": "a", "content": "import", "time": old})
    assert r1.status_code == 201
    assert r1.json()["time"].startswith(old[:19])
    assert (
        api.post(
            "/api/v1/memories", json={"agent_id": "a", "content": "import", "time": old}
        ).status_code
        == 409
    )
    assert (
        api.post("/api/v1/memories", json={"agent_id": "a", "content": "import"}).status_code == 201
    )


def test_batch_skips_duplicates_including_within_the_batch(api: TestClient) -> None:
    api.post("/api/v1/memories", json={"agent_id": "a", "content": "existing"})
    batch = {
        "memories": [
            {"agent_id": "a", "content": "existing"},
            {"agent_id": "a", "content": "new one", "tags": ["t"]},
            {"agent_id": "a", "content": "new one", "tags": ["t"]},
            {"agent_id": "b", "content": "new one"},
        ]
    }
    r = api.post("/api/v1/memories", json=batch)
    assert r.status_code == 201
    body = r.json()
    assert body["count"] == 2
    assert [m["agent_id"] for m in body["memories"]] == ["a", "b"]
    again = api.post("/api/v1/memories", json=batch).json()
    assert again == {"memories": [], "count": 0}


def test_invalid_batch_item_stores_nothing(api: TestClient) -> None:
    r = api.post(
        "/api/v1/memories",
        json={
            "memories": [
                {"agent_id": "a", "content": "fine"},
                {"agent_id": "a", "content": "bad", "importance": 3},
            ]
        },
    )
    assert r.status_code == 400
    assert r.json()["error"].startswith("memories[1]: invalid importance")
    assert api.get("/api/v1/memories").json()["count"] == 0


def test_empty_batch_falls_back_to_single_validation(api: TestClient) -> None:
    r = api.post("/api/v1/memories", json={"memories": []})
    assert r.status_code == 400
    assert r.json() == {"error": "agent_id is required"}


def test_tags_are_exact_membership_and(api: TestClient) -> None:
    api.post("/api/v1/memories", json={"agent_id": "a", "content": "1", "tags": ["smart", "home"]})
    api.post("/api/v1/memories", json={"agent_id": "a", "content": "2", "tags": ["art"]})
    api.post("/api/v1/memories", json={"agent_id": "a", "content": "3", "tags": ["art", "home"]})

    def contents(**params: str) -> list[str]:
        return sorted(
            m["content"] for m in api.get("/api/v1/memories", params=params).json()["memories"]
        )

    assert contents(tags="art") == ["2", "3"]
    assert contents(tags="art,home") == ["3"]
    assert contents(tags=" home , smart ") == ["1"]
    search = api.post("/api/v1/search", json={"tags": ["art"]}).json()
    assert sorted(m["content"] for m in search["results"]) == ["2", "3"]


def test_list_filters_order_paging_and_exact_has_more(api: TestClient) -> None:
    for i in range(5):
        api.post(
            "/api/v1/memories",
            json={
                "agent_id": "a",
                "content": f"m{i}",
                "session_id": "s1" if i % 2 else "s2",
                "memory_type": "decision" if i == 4 else "episodic",
                "event_type": "e" if i < 2 else "f",
                "time": _iso(timedelta(minutes=i - 10)),
            },
        )
    page = api.get("/api/v1/memories", params={"limit": 5}).json()
    assert [m["content"] for m in page["memories"]] == ["m4", "m3", "m2", "m1", "m0"]
    assert page["has_more"] is False and page["count"] == 5
    page = api.get("/api/v1/memories", params={"limit": 2, "offset": 2, "order": "asc"}).json()
    assert [m["content"] for m in page["memories"]] == ["m2", "m3"]
    assert page["has_more"] is True
    assert api.get("/api/v1/memories", params={"limit": 4}).json()["has_more"] is True
    sel = api.get("/api/v1/memories", params={"session_id": "s1", "event_type": "f"}).json()
    assert [m["content"] for m in sel["memories"]] == ["m3"]
    assert api.get("/api/v1/memories", params={"memory_type": "decision"}).json()["count"] == 1
    assert api.get("/api/v1/memories", params={"memory_type": "nosuchtype"}).json()["count"] == 0
    window = api.get("/api/v1/memories", params={"since": "8m", "until": "390s"}).json()
    assert [m["content"] for m in window["memories"]] == ["m3"]
    since_iso = api.get(
        "/api/v1/memories", params={"since": _iso(timedelta(minutes=-7, seconds=-30))}
    ).json()
    assert [m["content"] for m in since_iso["memories"]] == ["m4", "m3"]
    # limits: 0 means the default, above 1000 is capped
    assert api.get("/api/v1/memories", params={"limit": 0}).json()["count"] == 5
    assert api.get("/api/v1/memories", params={"limit": 5000}).json()["count"] == 5


def test_search_filters(api: TestClient) -> None:
    rows = [
        ("Deploy to Staging", "episodic", "deploy", 0.2),
        ("deploy to production", "decision", "deploy", 0.9),
        ("weather is nice", "entity", "chat", 0.5),
    ]
    for content, mtype, etype, imp in rows:
        api.post(
            "/api/v1/memories",
            json={
                "agent_id": "a",
                "content": content,
                "memory_type": mtype,
                "event_type": etype,
                "importance": imp,
            },
        )
    api.post("/api/v1/memories", json={"agent_id": "b", "content": "deploy from b"})

    def search(**body: object) -> list[str]:
        r = api.post("/api/v1/search", json=body)
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["count"] == len(data["results"]) and isinstance(data["query_time_ms"], int)
        return [m["content"] for m in data["results"]]

    assert search(content_contains="deploy") == ["deploy from b", "deploy to production"]
    assert search(content_contains="deploy", agent_id="a") == ["deploy to production"]
    assert search(memory_types=["decision", "entity"], order="asc") == [
        "deploy to production",
        "weather is nice",
    ]
    assert search(event_types=["deploy"], min_importance=0.5) == ["deploy to production"]
    assert search(limit=2) == ["deploy from b", "weather is nice"]
    assert search(content_contains="100%_") == []
    assert len(search()) == 4


def test_get_unknown_memory_is_404(api: TestClient) -> None:
    r = api.get("/api/v1/memories/mem_doesnotexist")
    assert r.status_code == 404
    assert r.json() == {"error": "memory not found"}


def test_dedup_can_be_disabled(tmp_path: object) -> None:
    from pathlib import Path

    from memtrace_server.api.app import create_app

    from conftest import make_settings

    settings = make_settings(Path(str(tmp_path)), dedup_enabled=False)
    with TestClient(create_app(settings)) as client:
        app = App(client, settings)
        key = app.new_key(app.new_org())
        for _ in range(2):
            r = client.post(
                "/api/v1/memories", json={"agent_id": "a", "content": "x"}, headers=app.as_key(key)
            )
            assert r.status_code == 201
            assert "dedup_key" not in r.json()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_single_creates_each_get_their_own_status(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """64 POSTs at once (the store may write them together): each gets the status it would
    get alone, and the org ends up as a second org does after the same POSTs in turn."""
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    settings = make_settings(tmp_path, store_url=url)
    with TestClient(create_app(settings)) as client:
        app = App(client, settings)
        concurrent, in_turn = (app.as_key(app.new_key(app.new_org(n))) for n in ("A", "B"))
        bodies: list[dict[str, Any]] = [
            {"agent_id": f"agent_{n % 4}", "session_id": f"s{n % 5}", "content": f"note {n}"}
            for n in range(48)
        ]
        bodies += [{"agent_id": "bot", "content": f"twice {run}"} for run in "abc" * 3]
        bodies += [
            {"agent_id": "bot", "content": "stored before"},
            {"agent_id": "bot", "key": "plan", "content": "plan pro", "time": _iso(-HOUR)},
            {"agent_id": "bot", "key": "plan", "content": "plan team", "time": _iso(-HOUR / 2)},
            {"agent_id": "bot", "session_id": "not a valid id!", "content": "bad session"},
            {"agent_id": "bot", "content": "gone", "expires_at": _iso(-HOUR)},
            {"agent_id": "bot", "session_id": "unknown_session", "content": "fine"},
            {"agent_id": "bot", "tags": ["x"] * 40, "content": "too many tags"},
            {"agent_id": "bot", "key": "plan", "content": "plan free", "time": _iso(-2 * HOUR)},
        ]
        for headers in (concurrent, in_turn):
            stored = {"agent_id": "bot", "content": "stored before"}
            assert client.post(V1 + "/memories", json=stored, headers=headers).status_code == 201

        async def post_all() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=client.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver", headers=concurrent
            ) as c:
                return await asyncio.gather(*(c.post(V1 + "/memories", json=b) for b in bodies))

        responses = app.call(post_all)
        sequential = [client.post(V1 + "/memories", json=b, headers=in_turn) for b in bodies]
        statuses = [r.status_code for r in responses]
        assert statuses[:48] == [201] * 48
        # which of three equal POSTs reaches the store first is up to the scheduler
        for run in "abc":
            twice = [
                s for s, b in zip(statuses, bodies, strict=True) if b["content"] == f"twice {run}"
            ]
            assert sorted(twice) == [201, 409, 409]
        assert statuses[57:] == [409, 201, 201, 400, 400, 201, 400, 201]
        assert sorted(statuses) == sorted(r.status_code for r in sequential)
        for r in responses:
            if r.status_code == 409:
                assert r.json() == {"error": "duplicate memory"}
            if r.status_code == 201:  # committed, as answered
                fetched = client.get(f"{V1}/memories/{r.json()['id']}", headers=concurrent)
                assert r.json().items() <= fetched.json().items()

        def state(headers: dict[str, str]) -> list[tuple[Any, ...]]:
            params = {"limit": 1000, "include_superseded": "true"}
            rows = client.get(V1 + "/memories", params=params, headers=headers).json()["memories"]
            content = {m["id"]: m["content"] for m in rows}
            return sorted(
                (
                    m["content"],
                    m.get("session_id"),
                    m.get("key"),
                    content.get(m.get("superseded_by")),
                )
                for m in rows
            )

        assert state(concurrent) == state(in_turn)
        current = client.get(V1 + "/memories", params={"key": "plan"}, headers=concurrent).json()
        assert [m["content"] for m in current["memories"]] == ["plan team"]
