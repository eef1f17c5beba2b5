"""``MemtraceStore`` with the real ``langgraph`` package against the real app, on SQLite and
PostgreSQL: every op sync and async, through the same store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchItem,
    SearchOp,
)
from starlette.testclient import TestClient

from langgraph_memtrace import MemtraceStore
from memtrace import PayloadTooLargeError, ValidationError
from memtrace_server.api.app import create_app

from conftest import App, make_settings

V1 = "/api/v1"


@pytest.fixture(params=["sqlite", "postgres"])
def app_and_keys(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[App, str, str]]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    settings = make_settings(tmp_path, store_url=url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        app = App(client, settings)
        yield app, app.new_key(app.new_org("A")), app.new_key(app.new_org("B"))


@pytest.fixture
def app(app_and_keys: tuple[App, str, str]) -> App:
    return app_and_keys[0]


@pytest.fixture
def key(app_and_keys: tuple[App, str, str]) -> str:
    return app_and_keys[1]


@pytest.fixture
def store(app: App, key: str) -> Iterator[MemtraceStore]:
    with app.sdk(key) as client:
        yield MemtraceStore(client=client)


@pytest.fixture
async def astore(app: App, key: str) -> AsyncIterator[MemtraceStore]:
    async with app.async_sdk(key) as client:
        yield MemtraceStore(async_client=client)


def memories(app: App, key: str, **params: Any) -> list[dict[str, Any]]:
    r = app.client.get(V1 + "/memories", headers=app.as_key(key), params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["memories"])


def test_put_get_overwrite_and_delete(store: MemtraceStore, app: App, key: str) -> None:
    assert store.get(("users", "alice"), "prefs") is None
    store.put(("users", "alice"), "prefs", {"text": "Alice likes dark mode", "theme": "dark"})
    item = store.get(("users", "alice"), "prefs")
    assert isinstance(item, Item) and not isinstance(item, SearchItem)
    assert item.namespace == ("users", "alice") and item.key == "prefs"
    assert item.value == {"text": "Alice likes dark mode", "theme": "dark"}
    assert isinstance(item.created_at, datetime) and item.created_at.tzinfo is not None
    assert item.created_at == item.updated_at
    first_time = item.updated_at

    store.put(("users", "alice"), "prefs", {"text": "Alice likes light mode", "theme": "light"})
    item = store.get(("users", "alice"), "prefs")
    assert item is not None and item.value["theme"] == "light"
    assert item.created_at == first_time < item.updated_at  # created once, updated now
    [hit] = store.search(("users",))
    assert (hit.created_at, hit.updated_at) == (item.created_at, item.updated_at)
    # the same value again is a new version too (its own dedup key)
    store.put(("users", "alice"), "prefs", {"text": "Alice likes light mode", "theme": "light"})
    history = memories(app, key, agent_id="langgraph", include_superseded="true")
    assert len(history) == 3
    assert [m.get("superseded_by") is None for m in history] == [True, False, False]

    store.delete(("users", "alice"), "prefs")
    assert store.get(("users", "alice"), "prefs") is None
    assert memories(app, key, agent_id="langgraph", include_superseded="true") == []


def test_items_are_plain_memories_over_rest(store: MemtraceStore, app: App, key: str) -> None:
    store.put(("users", "bob"), "food", {"content": "Bob is vegetarian", "since": 2019})
    store.put(("users", "bob"), "misc", {"likes": ["tea", "chess"], "level": 3})
    listed = {m["key"]: m for m in memories(app, key, agent_id="langgraph")}
    assert set(listed) == {"users.bob/food", "users.bob/misc"}
    food = listed["users.bob/food"]
    assert food["content"] == "Bob is vegetarian"
    assert food["metadata"]["lg_value"] == {"content": "Bob is vegetarian", "since": 2019}
    assert food["metadata"]["lg_namespace"] == ["users", "bob"]
    assert listed["users.bob/misc"]["content"] == 'likes: ["tea", "chess"]; level: 3'
    found = app.client.post(
        V1 + "/search", headers=app.as_key(key), json={"query": "vegetarian"}
    ).json()
    assert [m["key"] for m in found["results"]] == ["users.bob/food"]


def test_values_round_trip_losslessly(store: MemtraceStore) -> None:
    value = {
        "text": "x" * 5000,
        "nested": {"a": [1, 2.5, None, True, {"b": "ü"}]},
        "empty": {},
        "n": None,
        "big": 2**53,
    }
    store.put(("docs",), "long key/with %2F and . dots", value)
    item = store.get(("docs",), "long key/with %2F and . dots")
    assert item is not None and item.value == value
    store.put(("docs",), "empty", {})
    got = store.get(("docs",), "empty")
    assert got is not None and got.value == {}


def test_long_and_odd_paths_do_not_collide(store: MemtraceStore) -> None:
    long_ns = ("a" * 150, "b" * 150)
    store.put(long_ns, "k1", {"v": 1})
    store.put(long_ns, "k2", {"v": 2})
    store.put(("a/b",), "c", {"v": 3})
    store.put(("a",), "b/c", {"v": 4})
    store.put(("tab",), "line\nbreak\x7f", {"v": 5})
    assert [store.get(long_ns, k).value["v"] for k in ("k1", "k2")] == [1, 2]  # type: ignore[union-attr]
    assert store.get(("a/b",), "c").value == {"v": 3}  # type: ignore[union-attr]
    assert store.get(("a",), "b/c").value == {"v": 4}  # type: ignore[union-attr]
    assert store.get(("tab",), "line\nbreak\x7f").value == {"v": 5}  # type: ignore[union-attr]
    assert len(store.search((), limit=100)) == 5
    # labels are literal: no pattern characters, no wildcards in a search prefix
    store.put(("tenant", "a_%"), "k", {"v": 6})
    store.put(("tenant", "abc"), "k", {"v": 7})
    store.put(("tenant", "*"), "k", {"v": 8})
    assert [i.value["v"] for i in store.search(("tenant", "a_%"))] == [6]
    assert [i.value["v"] for i in store.search(("tenant", "*"))] == [8]


def test_namespace_prefix_search_and_pagination(store: MemtraceStore) -> None:
    store.put(("docs", "a"), "1", {"n": 1})
    store.put(("docs", "a", "deep"), "2", {"n": 2})
    store.put(("docs", "b"), "3", {"n": 3})
    store.put(("docsx",), "4", {"n": 4})
    store.put(("other",), "5", {"n": 5})
    assert sorted(i.value["n"] for i in store.search(("docs",))) == [1, 2, 3]
    assert sorted(i.value["n"] for i in store.search(("docs", "a"))) == [1, 2]
    assert [i.value["n"] for i in store.search(("docs", "a", "deep"))] == [2]
    assert len(store.search(())) == 5
    # newest first, like a database-backed store's updated_at order
    assert [i.value["n"] for i in store.search(())] == [5, 4, 3, 2, 1]
    assert [i.value["n"] for i in store.search((), limit=2, offset=1)] == [4, 3]
    assert all(i.score is None for i in store.search(()))
    assert store.search((), limit=0) == []


def test_filters_exact_on_the_server_and_operators_here(store: MemtraceStore) -> None:
    rows = [
        ("p1", {"color": "red", "size": 3, "ok": True, "tags": ["a"], "meta": {"k": 1}}),
        ("p2", {"color": "blue", "size": 5, "ok": False, "tags": ["a", "b"]}),
        ("p3", {"color": "red", "size": 8, "ok": 1, "tags": ["b"], "meta": {"k": 2}}),
        ("p4", {"color": "green", "size": 5.0, "note": "n" * 300}),
    ]
    for key, value in rows:
        store.put(("items",), key, value)

    def keys(**kwargs: Any) -> list[str]:
        return sorted(i.key for i in store.search(("items",), **kwargs))

    assert keys(filter={"color": "red"}) == ["p1", "p3"]
    assert keys(filter={"color": {"$eq": "red"}, "size": 8}) == ["p3"]
    assert keys(filter={"size": 5}) == ["p2", "p4"]  # JSON equality: 5 == 5.0
    assert keys(filter={"ok": True}) == ["p1"]  # but true is not 1
    assert keys(filter={"ok": 1}) == ["p3"]
    assert keys(filter={"color": {"$ne": "red"}}) == ["p2", "p4"]
    assert keys(filter={"size": {"$gt": 3}}) == ["p2", "p3", "p4"]
    assert keys(filter={"size": {"$gte": 5, "$lt": 8}}) == ["p2", "p4"]
    assert keys(filter={"size": {"$lte": 3}}) == ["p1"]
    assert keys(filter={"color": {"$gt": "green"}}) == ["p1", "p3"]
    assert keys(filter={"tags": ["a", "b"]}) == ["p2"]
    assert keys(filter={"meta": {"k": 2}}) == ["p3"]
    assert keys(filter={"note": "n" * 300}) == ["p4"]  # too long to mirror: checked here
    assert keys(filter={"missing": None}) == ["p1", "p2", "p3", "p4"]
    assert keys(filter={"size": 2**70}) == []  # beyond 64 bits: checked here
    assert keys(filter={"color": "red", "size": {"$gt": 3}}) == ["p3"]
    # local conditions page through candidates and slice after filtering
    page = store.search(("items",), filter={"size": {"$gt": 0}}, limit=2, offset=1)
    assert [i.key for i in page] == ["p3", "p2"]
    with pytest.raises(ValueError, match=r"unsupported filter operator '\$in'"):
        store.search(("items",), filter={"color": {"$in": ["red"]}})


def test_query_ranks_best_first_with_scores(store: MemtraceStore) -> None:
    store.put(("notes",), "a", {"text": "The user enjoys hiking in the mountains"})
    store.put(("notes",), "b", {"text": "The user prefers tea over coffee; tea every morning"})
    store.put(("notes",), "c", {"text": "Tea ceremony lessons on Sunday"})
    store.put(("elsewhere",), "d", {"text": "tea tea tea"})
    hits = store.search(("notes",), query="tea")
    assert [h.key for h in hits][:1] == ["b"] and {h.key for h in hits} == {"b", "c"}
    assert all(isinstance(h.score, float) for h in hits)
    assert hits[0].score >= hits[1].score  # type: ignore[operator]
    filtered = store.search(("notes",), query="tea", filter={"text": {"$ne": "x"}})
    assert [h.key for h in filtered] == [h.key for h in hits]


def test_hybrid_queries_need_the_servers_semantic_search(app: App, key: str) -> None:
    with app.sdk(key) as client:
        store = MemtraceStore(client=client, search_mode="hybrid")
        store.put(("h",), "k", {"text": "hello"})
        assert [i.key for i in store.search(("h",))] == ["k"]  # no query: no ranking mode
        with pytest.raises(ValidationError, match="semantic"):
            store.search(("h",), query="hello")


def test_list_namespaces(store: MemtraceStore) -> None:
    for ns in [("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f")]:
        store.put(ns, "k", {"x": 1})
    store.put(("a", "c", "f"), "k", {"x": 1})
    store.put(("a", "c", "f"), "k2", {"x": 2})
    assert store.list_namespaces(prefix=("a", "b"), max_depth=3) == [
        ("a", "b", "c"),
        ("a", "b", "d"),
        ("a", "b", "f"),
    ]
    assert store.list_namespaces() == [
        ("a", "b", "c"),
        ("a", "b", "d", "e"),
        ("a", "b", "d", "i"),
        ("a", "b", "f"),
        ("a", "c", "f"),
    ]
    assert store.list_namespaces(suffix=("f",)) == [("a", "b", "f"), ("a", "c", "f")]
    assert store.list_namespaces(prefix=("a", "*", "f")) == [("a", "b", "f"), ("a", "c", "f")]
    assert store.list_namespaces(prefix=("a",), suffix=("*", "e")) == [("a", "b", "d", "e")]
    assert store.list_namespaces(max_depth=1) == [("a",)]
    assert store.list_namespaces(limit=2, offset=1) == [("a", "b", "d", "e"), ("a", "b", "d", "i")]
    store.delete(("a", "c", "f"), "k")
    assert ("a", "c", "f") in store.list_namespaces()
    store.delete(("a", "c", "f"), "k2")
    assert ("a", "c", "f") not in store.list_namespaces()


def test_batch_runs_every_op_in_order(store: MemtraceStore) -> None:
    results = store.batch(
        [
            PutOp(("b",), "k", {"text": "one"}),
            GetOp(("b",), "k"),
            PutOp(("b",), "k", {"text": "two"}),
            SearchOp(("b",)),
            ListNamespacesOp(match_conditions=(MatchCondition("prefix", ("b",)),)),
            PutOp(("b",), "k", None),
            GetOp(("b",), "k"),
        ]
    )
    assert results[0] is None and results[2] is None and results[5] is None
    assert isinstance(results[1], Item) and results[1].value == {"text": "one"}
    assert [i.value for i in results[3]] == [{"text": "two"}]  # type: ignore[union-attr]
    assert results[4] == [("b",)]
    assert results[6] is None


def test_invalid_namespaces_are_refused_before_sending(store: MemtraceStore) -> None:
    with pytest.raises(InvalidNamespaceError):
        store.put(("a.b",), "k", {"x": 1})
    with pytest.raises(InvalidNamespaceError):
        store.batch([PutOp(("a.b",), "k", {"x": 1})])
    with pytest.raises(InvalidNamespaceError):
        store.batch([GetOp(("",), "k")])
    with pytest.raises(InvalidNamespaceError):
        store.put(("langgraph",), "k", {"x": 1})


def test_ttl_maps_to_expiry(store: MemtraceStore, app: App, key: str) -> None:
    store.put(("t",), "short", {"x": 1}, ttl=0.5)
    store.put(("t",), "forever", {"x": 2})
    listed = {m["key"]: m for m in memories(app, key, agent_id="langgraph")}
    assert "expires_at" in listed["t/short"] and "expires_at" not in listed["t/forever"]
    with pytest.raises(ValueError, match="365 days"):
        store.put(("t",), "x", {"x": 1}, ttl=366 * 24 * 60)


def test_default_ttl_from_ttl_config(app: App, key: str) -> None:
    with app.sdk(key) as client:
        store = MemtraceStore(client=client, ttl={"default_ttl": 60})
        store.put(("t",), "k", {"x": 1})
        store.put(("t",), "kept", {"x": 1}, ttl=None)
    listed = {m["key"]: m for m in memories(app, key, agent_id="langgraph")}
    assert "expires_at" in listed["t/k"] and "expires_at" not in listed["t/kept"]


def test_other_memories_of_the_agent_are_not_items(
    store: MemtraceStore, app: App, key: str
) -> None:
    with app.sdk(key) as client:
        client.remember("langgraph", "A note written by something else", metadata={"x": 1})
    store.put(("n",), "k", {"x": 1})
    assert [i.key for i in store.search(())] == ["k"]
    assert store.list_namespaces() == [("n",)]


def test_organisations_are_isolated(app_and_keys: tuple[App, str, str]) -> None:
    app, key_a, key_b = app_and_keys
    with app.sdk(key_a) as a, app.sdk(key_b) as b:
        store_a, store_b = MemtraceStore(client=a), MemtraceStore(client=b)
        store_a.put(("users", "u"), "secret", {"text": "org A only"})
        assert store_b.get(("users", "u"), "secret") is None
        assert store_b.search(()) == [] and store_b.list_namespaces() == []
        store_b.put(("users", "u"), "secret", {"text": "org B's own"})
        store_b.delete(("users", "u"), "secret")
        item = store_a.get(("users", "u"), "secret")
        assert item is not None and item.value == {"text": "org A only"}


def test_agents_are_separate_stores(app: App, key: str) -> None:
    with app.sdk(key) as client:
        one = MemtraceStore(client=client, agent_id="planner")
        two = MemtraceStore(client=client, agent_id="writer")
        one.put(("s",), "k", {"v": 1})
        assert two.get(("s",), "k") is None
        assert [m["agent_id"] for m in memories(app, key)] == ["planner"]


@pytest.mark.anyio
async def test_every_op_async(astore: MemtraceStore) -> None:
    await astore.aput(("users", "carol"), "prefs", {"text": "Carol likes jazz", "genre": "jazz"})
    await astore.aput(("users", "carol"), "food", {"text": "Carol likes ramen", "genre": "food"})
    item = await astore.aget(("users", "carol"), "prefs")
    assert item is not None and item.value["genre"] == "jazz"
    await astore.aput(("users", "carol"), "prefs", {"text": "Carol likes blues", "genre": "blues"})
    item = await astore.aget(("users", "carol"), "prefs")
    assert item is not None and item.value["genre"] == "blues"
    hits = await astore.asearch(("users",), query="ramen")
    assert [h.key for h in hits] == ["food"] and hits[0].score is not None
    assert [h.key for h in await astore.asearch(("users",), filter={"genre": "blues"})] == ["prefs"]
    assert [h.key for h in await astore.asearch(("users",), filter={"genre": {"$ne": "food"}})] == [
        "prefs"
    ]
    assert await astore.alist_namespaces(prefix=("users",)) == [("users", "carol")]
    await astore.adelete(("users", "carol"), "prefs")
    assert await astore.aget(("users", "carol"), "prefs") is None
    results = await astore.abatch([GetOp(("users", "carol"), "food"), SearchOp(("nobody",))])
    assert isinstance(results[0], Item) and results[1] == []


@pytest.mark.anyio
async def test_a_store_answers_only_the_side_it_has_a_client_for(
    astore: MemtraceStore, store: MemtraceStore
) -> None:
    with pytest.raises(RuntimeError, match="no sync client"):
        astore.get(("a",), "k")
    with pytest.raises(RuntimeError, match="no async client"):
        await store.aget(("a",), "k")


def test_constructor_does_no_io() -> None:
    store = MemtraceStore("http://127.0.0.1:9", "mtk_unused", agent_id="bot")
    assert store.agent_id == "bot"
    store.close()


def test_pages_are_followed_past_one_server_page(
    store: MemtraceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("langgraph_memtrace.plans.PAGE", 2)
    for n in range(7):
        store.put(("p", f"ns{n % 3}"), f"k{n}", {"n": n})
    assert [i.value["n"] for i in store.search(("p",), limit=5, offset=1)] == [5, 4, 3, 2, 1]
    odd = store.search(("p",), filter={"n": {"$gte": 1}}, limit=4, offset=1)
    assert [i.value["n"] for i in odd] == [5, 4, 3, 2]
    assert store.list_namespaces(prefix=("p",)) == [("p", "ns0"), ("p", "ns1"), ("p", "ns2")]


def test_more_equalities_than_the_server_takes_are_checked_here(store: MemtraceStore) -> None:
    value = {f"f{n}": n for n in range(20)}
    store.put(("wide",), "all", value)
    store.put(("wide",), "one-off", {**value, "f19": -1})
    assert [i.key for i in store.search(("wide",), filter=value)] == ["all"]


def test_a_value_too_large_for_the_server_is_a_clear_error(store: MemtraceStore) -> None:
    with pytest.raises(PayloadTooLargeError, match="metadata"):
        store.put(("big",), "k", {"blob": ["x" * 100] * 200})
    assert store.get(("big",), "k") is None
