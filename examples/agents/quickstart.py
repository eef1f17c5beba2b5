"""The OpenAI Agents SDK quick start with Memtrace memory.

Environment: MEMTRACE_URL (default http://localhost:9100), MEMTRACE_API_KEY, and
OPENAI_API_KEY. Without OPENAI_API_KEY the agent runs offline against a local scripted
stand-in for the model, so the memory flow can be seen without a network.
Run it twice: the second session starts with what the first one remembered.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from agents import (
    Agent,
    Runner,
    set_default_openai_api,
    set_default_openai_client,
    set_tracing_disabled,
)
from openai import AsyncOpenAI

from memtrace import AsyncMemtrace
from openai_agents_memtrace import MemtraceSession, create_memtrace_tools


async def main() -> None:
    # 1. Create Memtrace client
    client = AsyncMemtrace(
        os.environ.get("MEMTRACE_URL", "http://localhost:9100"), os.environ["MEMTRACE_API_KEY"]
    )

    # 2. Create memory tools bound to an agent
    tools = create_memtrace_tools(client, agent_id="support_agent")

    # 3. Create a session with prior memory context
    session = await MemtraceSession.create(client, agent_id="support_agent")
    prior = await session.get_items()
    print(prior[0]["content"] if prior else "No prior memory for support_agent yet.")  # type: ignore[index]

    # 4. Create an agent with memory tools
    agent = Agent(
        name="Support Agent",
        instructions=(
            "You are a helpful support agent. "
            "Use memtrace_remember to store important information and "
            "memtrace_recall to check what you've seen before."
        ),
        tools=tools,
    )

    # 5. Run the agent
    result = await Runner.run(
        agent, "My name is Dana and I need help with my account", session=session
    )
    print(result.final_output)

    # 6. Clean up
    await session.close()
    await client.close()


def use_scripted_model() -> None:
    """Route agents without a model to the local scripted Chat Completions server."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "openai"))
    from scripted_openai import ScriptedChatServer

    server = ScriptedChatServer().start()
    set_default_openai_client(
        AsyncOpenAI(api_key="scripted", base_url=server.base_url), use_for_tracing=False
    )
    set_default_openai_api("chat_completions")
    set_tracing_disabled(True)
    print("No OPENAI_API_KEY: using a local scripted stand-in for the model.\n")


if __name__ == "__main__":
    if not os.environ.get("OPENAI_API_KEY"):
        use_scripted_model()
    asyncio.run(main())
