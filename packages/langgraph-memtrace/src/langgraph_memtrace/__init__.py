"""LangGraph's long-term memory store backed by Memtrace: ``MemtraceStore``."""

from langgraph_memtrace.store import MemtraceStore

__version__ = "0.3.0.dev0"

__all__ = ["MemtraceStore", "__version__"]
