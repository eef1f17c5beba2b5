"""One GPT agent with Memtrace memory: the memory loop of the OpenAI integration guide.

Environment: OPENAI_API_KEY (and optionally OPENAI_BASE_URL, OPENAI_MODEL),
MEMTRACE_URL (default http://localhost:9100) and MEMTRACE_API_KEY.

Run it twice: the second run starts with what the first one remembered.
"""

from __future__ import annotations

import os

from openai import OpenAI

from memtrace import ConflictError, ContextOptions, Memtrace
from memtrace.openai import MemtraceToolbox, run_with_memory

AGENT_NAME = "openai-cookbook-agent"
TURNS = [
    "My name is Alex and I prefer dark mode and Python.",
    "What do you remember about me?",
    "Can you recommend a tech stack for my next project?",
]


def main() -> None:
    memtrace = Memtrace()
    openai_client = OpenAI()
    model = os.environ.get("OPENAI_MODEL", "gpt-4o")
    try:
        agent = memtrace.register_agent(
            {"name": AGENT_NAME, "description": "Assistant with memory"}
        )
    except ConflictError:  # registered by an earlier run: reuse it
        agent = memtrace.get_agent(AGENT_NAME)

    earlier = memtrace.list_sessions(agent.id).sessions
    session = memtrace.create_session(
        {"agent_id": agent.id, "metadata": {"cookbook": "openai-single-agent"}}
    )
    prior = ""
    if earlier:
        ctx = memtrace.get_session_context(earlier[0].id, ContextOptions(since="24h"))
        if ctx.memory_count:
            prior = ctx.context
            print(f"Prior memory, from session {earlier[0].id}:\n{prior}")
    if not prior:
        print("No prior memories (first run).")

    toolbox = MemtraceToolbox(memtrace, agent_id=agent.id, session_id=session.id)
    messages: list[dict[str, object]] = [
        {
            "role": "system",
            "content": "You are a helpful assistant with long-term memory. Use memtrace_remember "
            "for facts about the user, memtrace_recall and memtrace_search before answering "
            "questions about the past, and memtrace_decide to log recommendations.\n\n" + prior,
        }
    ]
    for text in TURNS:
        print(f"\nUser: {text}")
        messages.append({"role": "user", "content": text})
        reply = run_with_memory(openai_client, messages, toolbox, model=model)
        print(f"Assistant: {reply.content}")

    stored = memtrace.get_session_memories(session.id, {"order": "asc"})
    print(f"\nRemembered in session {session.id}:")
    for memory in stored.memories:
        print(f"- [{memory.memory_type}] {memory.content}")
    memtrace.close_session(session.id)
    memtrace.close()


if __name__ == "__main__":
    main()
