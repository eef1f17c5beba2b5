"""Memtrace: memory for AI agents. Sync and async clients for the Memtrace API.

Code written for memtrace-sdk 0.2.0 runs unchanged; request methods also take plain dicts.
"""

from memtrace.async_client import AsyncMemtrace
from memtrace.client import Memtrace
from memtrace.exceptions import (
    AuthenticationError,
    ConflictError,
    MemtraceConnectionError,
    MemtraceError,
    MemtraceTimeoutError,
    NoArcInstanceError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    ValidationError,
)
from memtrace.models import (
    AddMemoryRequest,
    Agent,
    AgentContext,
    AgentList,
    AgentStats,
    ContextOptions,
    CreateSessionRequest,
    EraseQuery,
    EraseResult,
    ListOptions,
    Memory,
    MemoryList,
    RegisterAgentRequest,
    SearchQuery,
    SearchResult,
    Session,
    SessionContext,
    SessionList,
    UpdateAgentRequest,
    UpdateSessionRequest,
)

__version__ = "0.3.0.dev0"

__all__ = [
    "AddMemoryRequest",
    "Agent",
    "AgentContext",
    "AgentList",
    "AgentStats",
    "AsyncMemtrace",
    "AuthenticationError",
    "ConflictError",
    "ContextOptions",
    "CreateSessionRequest",
    "EraseQuery",
    "EraseResult",
    "ListOptions",
    "Memory",
    "MemoryList",
    "Memtrace",
    "MemtraceConnectionError",
    "MemtraceError",
    "MemtraceTimeoutError",
    "NoArcInstanceError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RegisterAgentRequest",
    "SearchQuery",
    "SearchResult",
    "ServiceUnavailableError",
    "Session",
    "SessionContext",
    "SessionList",
    "UpdateAgentRequest",
    "UpdateSessionRequest",
    "ValidationError",
    "__version__",
]
