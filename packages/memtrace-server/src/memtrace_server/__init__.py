"""Memtrace server: a wire-compatible memory service for AI agents."""

__version__ = "0.3.0.dev0"
