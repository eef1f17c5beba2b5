"""Memtrace memory for the OpenAI Agents SDK: function tools and a persistent session."""

from openai_agents_memtrace.session import MemtraceSession
from openai_agents_memtrace.tools import create_memtrace_tools

__version__ = "0.3.0.dev0"

__all__ = ["MemtraceSession", "__version__", "create_memtrace_tools"]
