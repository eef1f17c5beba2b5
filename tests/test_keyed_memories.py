"""Keyed memories and metadata filters over HTTP, on both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from memtrace_server.api.app import create_app

from conftest import App, make_settings

V1 = "/api/v1"


@pytest.fixture(params=["sqlite", "postgres"])
def two_orgs(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[App, dict[str, str], dict[str, str]]]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    settings = make_settings(tmp_path, store_url=url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        app = App(client, settings)
        a = app.as_key(app.new_key(app.new_org("A")))
        b = app.as_key(app.new_key(app.new_org("B")))
        yield app, a, b


def remember(app: App, h: dict[str, str], content: str, **fields: Any) -> dict[str, Any]:
    r = app.client.post(
        V1 + "/memories", headers=h, json={"agent_id": "support", "content": content, **fields}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def contents(app: App, h: dict[str, str], **params: Any) -> list[str]:
    r = app.client.get(V1 + "/memories", headers=h, params=params)
    assert r.status_code == 200, r.text
    return [m["content"] for m in r.json()["memories"]]


def test_remembering_under_a_key_keeps_one_current_version_and_the_history(
    two_orgs: tuple[App, dict[str, str], dict[str, str]],
) -> None:
    app, a, b = two_orgs
    c = app.client
    session = c.post(V1 + "/sessions", headers=a, json={"agent_id": "support"}).json()
    pro = remember(app, a, "The customer is on the Pro plan", key="plan", session_id=session["id"])
    assert pro["key"] == "plan" and "superseded_by" not in pro
    plain = remember(app, a, "The customer called about an invoice", session_id=session["id"])
    assert "key" not in plain  # a request without the new fields answers as before
    ent = remember(app, a, "The customer moved to Enterprise", key="plan", session_id=session["id"])

    # every read hides the old version
    assert contents(app, a) == [
        "The customer moved to Enterprise",
        "The customer called about an invoice",
    ]
    assert contents(app, a, include_superseded="true") == [
        "The customer moved to Enterprise",
        "The customer called about an invoice",
        "The customer is on the Pro plan",
    ]
    assert contents(app, a, key="plan") == ["The customer moved to Enterprise"]
    searched = c.post(V1 + "/search", headers=a, json={"query": "customer plan"}).json()
    assert "The customer is on the Pro plan" not in [m["content"] for m in searched["results"]]
    both = c.post(V1 + "/search", headers=a, json={"key": "plan", "include_superseded": True})
    assert [m["id"] for m in both.json()["results"]] == [ent["id"], pro["id"]]
    context = c.post(V1 + f"/sessions/{session['id']}/context", headers=a, json={}).json()
    assert "Enterprise" in context["context"] and "Pro plan" not in context["context"]
    agent_context = c.post(V1 + "/agents/support/context", headers=a, json={}).json()
    assert "Enterprise" in agent_context["context"] and "Pro plan" not in agent_context["context"]
    assert c.get(V1 + "/agents/support/stats", headers=a).json()["memory_count"] == 2

    # the old version stays readable by id, and names its successor
    old = c.get(V1 + f"/memories/{pro['id']}", headers=a).json()
    assert old["superseded_by"] == ent["id"] and old["superseded_at"]
    versions = c.get(V1 + f"/memories/{pro['id']}/versions", headers=a).json()
    assert [m["id"] for m in versions["memories"]] == [ent["id"], pro["id"]] and versions[
        "count"
    ] == 2
    alone = c.get(V1 + f"/memories/{plain['id']}/versions", headers=a).json()
    assert [m["id"] for m in alone["memories"]] == [plain["id"]]

    # another org sees none of it and changes none of it
    assert c.get(V1 + f"/memories/{pro['id']}/versions", headers=b).status_code == 404
    assert c.get(V1 + f"/memories/{pro['id']}", headers=b).status_code == 404
    assert contents(app, b, key="plan", include_superseded="true") == []
    gone = c.post(
        V1 + "/memories/delete", headers=b, json={"key": "plan", "include_superseded": True}
    )
    assert gone.json()["deleted"] == 0
    assert len(contents(app, a, include_superseded="true")) == 3

    # erasing the current version makes the previous one current again
    assert c.delete(V1 + f"/memories/{ent['id']}", headers=a).status_code == 204
    assert contents(app, a, key="plan") == ["The customer is on the Pro plan"]
    assert "superseded_by" not in c.get(V1 + f"/memories/{pro['id']}", headers=a).json()
    # erase by key with include_superseded removes the whole history
    remember(app, a, "The customer downgraded to Free", key="plan")
    erased = c.post(
        V1 + "/memories/delete", headers=a, json={"key": "plan", "include_superseded": True}
    )
    assert erased.json()["deleted"] == 2
    assert contents(app, a, key="plan", include_superseded="true") == []
    # include_superseded alone is not a filter to erase by
    assert (
        c.post(V1 + "/memories/delete", headers=a, json={"include_superseded": True}).status_code
        == 400
    )


def test_a_batch_applies_versions_in_order_and_a_retry_creates_none(
    two_orgs: tuple[App, dict[str, str], dict[str, str]],
) -> None:
    app, a, _ = two_orgs
    c = app.client
    batch = [{"agent_id": "support", "content": f"status {i}", "key": "status"} for i in range(3)]
    r = c.post(V1 + "/memories", headers=a, json={"memories": batch})
    assert r.status_code == 201 and r.json()["count"] == 3
    assert contents(app, a) == ["status 2"]
    ids = [m["id"] for m in r.json()["memories"]]
    history = c.get(V1 + f"/memories/{ids[0]}/versions", headers=a).json()["memories"]
    assert [m["content"] for m in history] == ["status 2", "status 1", "status 0"]
    assert history[1]["superseded_by"] == ids[2] and history[2]["superseded_by"] == ids[1]
    again = c.post(V1 + "/memories", headers=a, json=batch[2])
    assert again.status_code == 409 and again.json() == {"error": "duplicate memory"}
    assert len(c.get(V1 + f"/memories/{ids[0]}/versions", headers=a).json()["memories"]) == 3


def test_metadata_filters_on_search_and_lists(
    two_orgs: tuple[App, dict[str, str], dict[str, str]],
) -> None:
    app, a, b = two_orgs
    c = app.client
    remember(
        app, a, "pro, eu", metadata={"plan": "pro", "region": "eu", "seats": 5, "trial": False}
    )
    remember(
        app, a, "pro, us", metadata={"plan": "pro", "region": "us", "seats": 5.0, "owner": None}
    )
    remember(app, a, "free", metadata={"plan": "free", "trial": True})
    remember(app, b, "B's pro", metadata={"plan": "pro"})

    def search(**metadata: Any) -> list[str]:
        r = c.post(V1 + "/search", headers=a, json={"metadata": metadata, "order": "asc"})
        assert r.status_code == 200, r.text
        return [m["content"] for m in r.json()["results"]]

    assert search(plan="pro") == ["pro, eu", "pro, us"]
    assert search(plan="pro", region="us") == ["pro, us"]
    assert search(seats=5) == ["pro, eu", "pro, us"]
    assert search(trial=False) == ["pro, eu"] and search(trial=True) == ["free"]
    assert search(owner=None) == ["pro, us"]
    assert contents(app, a, metadata=json.dumps({"plan": "free"})) == ["free"]
    assert contents(app, b, metadata=json.dumps({"plan": "free"})) == []
    ranked = c.post(
        V1 + "/search", headers=a, json={"query": "pro", "metadata": {"region": "eu"}}
    ).json()
    assert [m["content"] for m in ranked["results"]] == ["pro, eu"]


BAD = [
    ("POST", "/search", {"metadata": ["plan", "pro"]}, "metadata"),
    ("POST", "/search", {"metadata": {"plan": {"tier": "pro"}}}, "top-level fields only"),
    ("POST", "/search", {"metadata": {"tags": ["a"]}}, "top-level fields only"),
    ("POST", "/search", {"metadata": {f"f{i}": i for i in range(17)}}, "at most 16 fields"),
    ("POST", "/search", {"key": "x" * 201}, "invalid key"),
    ("GET", "/memories", {"metadata": "{not json"}, "invalid metadata filter"),
    ("GET", "/memories", {"metadata": "[1, 2]"}, "invalid metadata filter"),
    ("GET", "/memories", {"metadata": '{"a": {"b": 1}}'}, "top-level fields only"),
    ("GET", "/memories", {"key": "bad\u0007key"}, "invalid key"),
    ("POST", "/memories", {"agent_id": "a", "content": "x", "key": "line\nbreak"}, "invalid key"),
    ("POST", "/memories", {"agent_id": "a", "content": "x", "key": "k" * 201}, "invalid key"),
    ("POST", "/memories", {"agent_id": "a", "content": "x", "key": 7}, "key"),
]


@pytest.mark.parametrize(("method", "path", "payload", "fragment"), BAD)
def test_bad_keys_and_filters_are_400_and_change_nothing(
    app: App, org_key: tuple[str, str], method: str, path: str, payload: Any, fragment: str
) -> None:
    h = app.as_key(org_key[1])
    kwargs: dict[str, Any] = {"params": payload} if method == "GET" else {"json": payload}
    r = app.client.request(method, V1 + path, headers=h, **kwargs)
    assert r.status_code == 400 and fragment in r.json()["error"], r.text
    assert app.client.get(V1 + "/memories", headers=h).json()["count"] == 0
