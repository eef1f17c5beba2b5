"""Compiled LangGraph graphs using ``MemtraceStore``: the example against a live server (two
runs, two processes), and an async graph in-process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TypedDict

import httpx
import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from langgraph_memtrace import MemtraceStore

from conftest import ROOT, App, LiveServer, new_cli_key

EXAMPLE = ROOT / "examples" / "langgraph" / "memory_graph.py"


def run_example(server: LiveServer, key: str, message: str) -> str:
    env = {**os.environ, "MEMTRACE_URL": server.url, "MEMTRACE_API_KEY": key}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), message],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


def test_the_example_remembers_preferences_across_runs(live_server: LiveServer) -> None:
    key = new_cli_key(live_server.data_dir)[1]
    assert (
        run_example(live_server, key, "What do I prefer?") == "I don't know your preferences yet."
    )
    assert run_example(live_server, key, "I prefer dark mode") == "You prefer dark mode."
    assert run_example(live_server, key, "I like green tea.") == "You prefer dark mode, green tea."
    assert run_example(live_server, key, "What do I prefer?") == "You prefer dark mode, green tea."

    # the items are ordinary memories of the agent, for every other reader
    h = {"x-api-key": key}
    listed = httpx.get(
        live_server.url + "/api/v1/memories", params={"agent_id": "langgraph-example"}, headers=h
    ).json()["memories"]
    assert sorted((m["key"], m["content"]) for m in listed) == [
        ("users.alice.preferences/dark-mode", "alice prefers dark mode"),
        ("users.alice.preferences/green-tea", "alice prefers green tea"),
    ]
    context = httpx.post(
        live_server.url + "/api/v1/agents/langgraph-example/context", json={}, headers=h
    ).json()["context"]
    assert "alice prefers green tea" in context


class Turn(TypedDict):
    user: str
    said: str
    recalled: list[str]


@dataclass
class Who:
    user: str


async def note_and_recall(state: Turn, runtime: Runtime[Who]) -> dict[str, list[str]]:
    assert runtime.store is not None
    namespace = ("notes", runtime.context.user)
    if state["said"]:
        await runtime.store.aput(namespace, f"n{len(state['said'])}", {"text": state["said"]})
    hits = await runtime.store.asearch(namespace, query="coffee")
    return {"recalled": [h.value["text"] for h in hits]}


@pytest.mark.anyio
async def test_an_async_graph_uses_the_store(app: App, org_key: tuple[str, str]) -> None:
    graph = StateGraph(Turn, context_schema=Who)
    graph.add_node("note_and_recall", note_and_recall)
    graph.add_edge(START, "note_and_recall")
    graph.add_edge("note_and_recall", END)
    async with app.async_sdk(org_key[1]) as client:
        compiled = graph.compile(store=MemtraceStore(async_client=client))
        first = await compiled.ainvoke(
            {"user": "u", "said": "Drinks coffee black", "recalled": []}, context=Who("u")
        )
        assert first["recalled"] == ["Drinks coffee black"]
        again = await compiled.ainvoke({"user": "u", "said": "", "recalled": []}, context=Who("u"))
        assert again["recalled"] == ["Drinks coffee black"]
        other = await compiled.ainvoke({"user": "v", "said": "", "recalled": []}, context=Who("v"))
        assert other["recalled"] == []


@pytest.mark.anyio
async def test_a_store_built_from_url_and_key_works_async_over_sockets(
    live_server: LiveServer,
) -> None:
    key = new_cli_key(live_server.data_dir)[1]
    async with MemtraceStore(live_server.url, key, agent_id="async-bot") as store:
        # concurrent writers of one item leave one current version
        await asyncio.gather(*(store.aput(("c",), "k", {"text": f"v{n}"}) for n in range(5)))
        [hit] = await store.asearch(("c",))
        item = await store.aget(("c",), "k")
        assert item is not None and item.value == hit.value
        assert await store.alist_namespaces() == [("c",)]
        store.put(("c",), "sync", {"text": "the sync side works too"})
        assert store.get(("c",), "sync") is not None
