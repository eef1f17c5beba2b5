"""Memtrace memory for the OpenAI Agents SDK (work in progress)."""

__version__ = "0.3.0.dev0"
