"""What the console's pages call: the services the REST API uses, and console sign-ins."""

from __future__ import annotations

from dataclasses import dataclass

from memtrace_server.service.admin import Admin
from memtrace_server.service.agents import Agents
from memtrace_server.service.console_sessions import ConsoleSessions
from memtrace_server.service.memories import Memories
from memtrace_server.service.overview import Overview
from memtrace_server.service.transfer import Transfer


@dataclass(frozen=True)
class ConsoleServices:
    """Built once per app by the app factory."""

    memories: Memories
    agents: Agents
    overview: Overview
    admin: Admin
    transfer: Transfer
    sessions: ConsoleSessions
    secure_cookie: bool = False  # mark the cookie Secure even on plain http (behind a proxy)
