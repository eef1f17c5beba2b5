"""Ranked text search (``query``) on both backends, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from memtrace_server.api.app import create_app

from conftest import App, make_settings

V1 = "/api/v1"
CORPUS = [
    ("Caroline went to the LGBTQ support group on Tuesday", ["community"], 0.2, 3),
    ("Melanie painted a sunset over the lake", ["art"], 0.9, 1),
    ("The support group helped Caroline feel accepted", ["community"], 0.5, 40),
    ("Melanie signed up for pottery classes", ["art"], 0.1, 2),
    ("Deploy the API to staging before Friday", ["work"], 0.3, 5),
]


def _iso(days_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(params=["sqlite", "postgres"])
def ranked(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TestClient, dict[str, str], dict[str, str]]]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    settings = make_settings(tmp_path, store_url=url)
    with TestClient(create_app(settings)) as client:
        app = App(client, settings)
        a = app.as_key(app.new_key(app.new_org("A")))
        b = app.as_key(app.new_key(app.new_org("B")))
        for text, tags, importance, days in CORPUS:
            r = client.post(
                V1 + "/memories",
                headers=a,
                json={
                    "agent_id": "bot",
                    "content": text,
                    "tags": tags,
                    "importance": importance,
                    "time": _iso(days),
                },
            )
            assert r.status_code == 201
        client.post(
            V1 + "/memories",
            headers=b,
            json={"agent_id": "bot", "content": "support group in org B"},
        )
        client.post(
            V1 + "/memories",
            headers=a,
            json={"agent_id": "other", "content": "support group notes of another agent"},
        )
        yield client, a, b


def search(client: TestClient, h: dict[str, str], **body: Any) -> list[dict[str, Any]]:
    r = client.post(V1 + "/search", json=body, headers=h)
    assert r.status_code == 200, r.text
    return list(r.json()["results"])


def test_query_ranks_by_relevance_within_the_tenant(
    ranked: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    client, a, b = ranked
    hits = search(client, a, agent_id="bot", query="When did Caroline go to the support group?")
    assert {h["content"] for h in hits[:2]} == {
        "Caroline went to the LGBTQ support group on Tuesday",
        "The support group helped Caroline feel accepted",
    }
    assert all(h["score"] > 0 for h in hits[:2]) and hits[0]["score"] >= hits[1]["score"]
    assert all("Melanie" not in h["content"] for h in hits)
    # stemming: "painting" finds "painted"; tags are searched too
    assert (
        search(client, a, query="painting")[0]["content"]
        == "Melanie painted a sunset over the lake"
    )
    assert {h["content"] for h in search(client, a, agent_id="bot", query="art")} == {
        "Melanie painted a sunset over the lake",
        "Melanie signed up for pottery classes",
    }
    # never another org, and the agent filter holds
    assert [h["content"] for h in search(client, b, query="support group")] == [
        "support group in org B"
    ]
    assert (
        "another agent" in search(client, a, query="support group", agent_id="other")[0]["content"]
    )
    # without query nothing changes: newest first, no score
    plain = search(client, a, agent_id="bot")
    assert (
        plain[0]["content"] == "Melanie painted a sunset over the lake" and "score" not in plain[0]
    )


def test_filters_apply_before_ranking(
    ranked: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    client, a, _ = ranked
    # the best match is 40 days old: a 7-day window must still return the recent one
    hits = search(
        client, a, agent_id="bot", query="support group Caroline accepted", since="7d", limit=1
    )
    assert [h["content"] for h in hits] == ["Caroline went to the LGBTQ support group on Tuesday"]
    assert search(client, a, query="support", tags=["work"]) == []
    assert search(client, a, query="Melanie", min_importance=0.5)[0]["content"].startswith(
        "Melanie painted"
    )


def test_blending_recency_and_importance(
    ranked: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    client, a, _ = ranked
    base = search(client, a, agent_id="bot", query="Caroline support group")
    recent = search(
        client, a, agent_id="bot", query="Caroline support group", recency_half_life="1d"
    )
    assert recent[0]["content"] == "Caroline went to the LGBTQ support group on Tuesday"
    assert recent[0]["score"] < base[0]["score"]  # three days of a one-day half-life
    weighted = search(client, a, agent_id="bot", query="Melanie", importance_weight=10)
    assert weighted[0]["content"] == "Melanie painted a sunset over the lake"
    for bad in (
        {"mode": "hybrid", "query": "x"},
        {"query": "x", "recency_half_life": "soon"},
        {"query": "x", "importance_weight": -1},
        {"mode": "vector"},
    ):
        assert client.post(V1 + "/search", json=bad, headers=a).status_code == 400


def test_query_aware_context_and_erasure_leaves_no_trace(
    ranked: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    client, a, _ = ranked
    ctx = client.post(
        V1 + "/agents/bot/context",
        headers=a,
        json={"since": "60d", "query": "pottery classes", "max_tokens": 40},
    ).json()
    assert ctx["memory_count"] == 1 and "pottery" in ctx["context"]
    full = client.post(V1 + "/agents/bot/context", headers=a, json={"since": "60d"}).json()
    assert full["memory_count"] == 5
    target = search(client, a, query="pottery")[0]
    assert client.delete(V1 + f"/memories/{target['id']}", headers=a).status_code == 204
    assert search(client, a, query="pottery") == []
    client.post(V1 + "/memories/delete", headers=a, json={"tags": ["community"]})
    assert search(client, a, agent_id="bot", query="Caroline support group") == []
    assert (
        client.post(V1 + "/memories/delete", headers=a, json={"query": "sunset"}).status_code == 400
    )


def test_explain_gives_each_result_its_score_components(
    ranked: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    client, a, b = ranked
    body = {"query": "support group", "recency_half_life": "7d", "importance_weight": 2.0}
    plain = client.post(V1 + "/search", json=body, headers=a).json()
    explained = client.post(V1 + "/search", json={**body, "explain": True}, headers=a).json()
    assert [r["id"] for r in explained["results"]] == [r["id"] for r in plain["results"]]
    for hit, bare in zip(explained["results"], plain["results"], strict=True):
        why = hit["explanation"]
        assert {k: v for k, v in hit.items() if k != "explanation"} == bare  # the rest: unchanged
        assert set(why) == {
            "text_score", "relevance", "recency_factor", "importance_factor", "final_score"
        }  # fmt: skip
        assert why["text_score"] == why["relevance"] > 0
        assert why["importance_factor"] == pytest.approx(1 + 2.0 * hit.get("importance", 0))
        assert 0 < why["recency_factor"] <= 1
        assert why["final_score"] == pytest.approx(
            why["relevance"] * why["importance_factor"] * why["recency_factor"], rel=1e-4
        )
        assert why["final_score"] == pytest.approx(hit["score"], abs=1e-6)
    # the 40-day-old memory is recalled with a small recency factor
    old = next(r for r in explained["results"] if "accepted" in r["content"])
    assert old["explanation"]["recency_factor"] < 0.05
    # plain BM25: factors of 1; without a query nothing is scored
    (first, *_) = search(client, a, query="support group", explain=True)
    assert first["explanation"]["recency_factor"] == first["explanation"]["importance_factor"] == 1
    assert first["explanation"]["final_score"] == pytest.approx(first["score"], abs=1e-6)
    unranked = search(client, a, agent_id="bot", explain=True)
    assert unranked and all(r["explanation"]["final_score"] is None for r in unranked)
    # another org's key explains only its own memories
    assert {r["content"] for r in search(client, b, query="support group", explain=True)} == {
        "support group in org B"
    }


def test_without_explain_the_response_has_no_explanation(
    ranked: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    client, a, _ = ranked
    for body in ({"query": "support"}, {"query": "support", "explain": False}, {"explain": None}):
        assert all("explanation" not in r for r in search(client, a, **body))
