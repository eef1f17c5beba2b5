"""Python client for Memtrace: memory for AI agents (work in progress)."""

__version__ = "0.3.0.dev0"
