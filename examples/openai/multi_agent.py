"""Two GPT agents sharing one Memtrace session: a researcher and a summarizer.

Environment as for single_agent.py. Safe to run again: agents are reused by name.
"""

from __future__ import annotations

import os

from openai import OpenAI

from memtrace import ConflictError, ContextOptions, Memtrace
from memtrace.openai import MemtraceToolbox, run_with_memory


def agent_named(memtrace: Memtrace, name: str, description: str) -> str:
    """The id of the agent with this name, registering it on first use."""
    try:
        return memtrace.register_agent({"name": name, "description": description}).id
    except ConflictError:
        return memtrace.get_agent(name).id


def main() -> None:
    memtrace = Memtrace()
    openai_client = OpenAI()
    model = os.environ.get("OPENAI_MODEL", "gpt-4o")
    researcher = agent_named(memtrace, "researcher", "Investigates topics and stores findings")
    summarizer = agent_named(memtrace, "summarizer", "Reads research and writes reports")
    session = memtrace.create_session(
        {"agent_id": researcher, "metadata": {"cookbook": "openai-multi-agent", "topic": "memory"}}
    )

    messages: list[dict[str, object]] = [
        {
            "role": "system",
            "content": "You are a researcher. Store each finding with "
            "memtrace_remember (with tags and importance) and log your method with memtrace_decide.",
        },
        {
            "role": "user",
            "content": "Research why AI agents need memory. I prefer short findings; "
            "what should we recommend?",
        },
    ]
    reply = run_with_memory(
        openai_client, messages, MemtraceToolbox(memtrace, researcher, session.id), model=model
    )
    print(f"Researcher: {reply.content}")

    ctx = memtrace.get_session_context(session.id, ContextOptions(since="1h"))
    print(f"\nShared context ({ctx.memory_count} memories):\n{ctx.context}")
    report = openai_client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": f"You are a report writer.\n\n{ctx.context}"},
            {"role": "user", "content": "Create a summary report"},
        ],
    )
    print(f"Summarizer ({summarizer}): {report.choices[0].message.content}")
    memtrace.close_session(session.id)
    memtrace.close()


if __name__ == "__main__":
    main()
