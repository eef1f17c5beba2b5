"""A LangGraph graph that remembers a user's preferences in Memtrace, across runs.

The compiled ``StateGraph`` gets ``store=MemtraceStore(...)``. Its one node stores what
the user says they prefer under ``("users", <user id>, "preferences")`` and answers with
every preference it recalls from the store, so a second run (a new process, or a new
thread) sees what the first stored. No model is needed: the node reads the message itself.

    MEMTRACE_URL=http://localhost:9100 MEMTRACE_API_KEY=mtk_... \\
        python examples/langgraph/memory_graph.py "I prefer dark mode"
    python examples/langgraph/memory_graph.py "What do I prefer?"
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from langgraph_memtrace import MemtraceStore


class State(TypedDict):
    message: str
    reply: str


@dataclass
class Context:
    user_id: str


def remember_and_recall(state: State, runtime: Runtime[Context]) -> dict[str, str]:
    assert runtime.store is not None
    namespace = ("users", runtime.context.user_id, "preferences")
    stated = re.match(r"\s*i (?:prefer|like|love) (.+?)[.!]?\s*$", state["message"], re.I)
    if stated:
        preference = stated.group(1)
        slug = re.sub(r"[^a-z0-9]+", "-", preference.lower()).strip("-")
        runtime.store.put(
            namespace,
            slug,
            {"text": f"{runtime.context.user_id} prefers {preference}", "preference": preference},
        )
    remembered = [item.value["preference"] for item in runtime.store.search(namespace, limit=20)]
    if not remembered:
        return {"reply": "I don't know your preferences yet."}
    return {"reply": "You prefer " + ", ".join(sorted(remembered)) + "."}


def build_graph(store: BaseStore) -> CompiledStateGraph[State, Context, State, State]:
    """The graph, compiled with ``store``."""
    graph = StateGraph(State, context_schema=Context)
    graph.add_node("remember_and_recall", remember_and_recall)
    graph.add_edge(START, "remember_and_recall")
    graph.add_edge("remember_and_recall", END)
    return graph.compile(store=store)


def main(message: str, user_id: str = "alice") -> str:
    """Run the graph once against the server at MEMTRACE_URL with MEMTRACE_API_KEY."""
    with MemtraceStore(agent_id="langgraph-example") as store:
        result = build_graph(store).invoke(
            {"message": message, "reply": ""}, context=Context(user_id=user_id)
        )
    return str(result["reply"])


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else "What do I prefer?"))
