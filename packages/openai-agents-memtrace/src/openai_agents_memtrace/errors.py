"""How Memtrace errors cross ``Runner.run``.

The Agents SDK wraps exceptions from tools in ``UserError`` unless they are already
``AgentsException``s. To let callers write ``except AuthenticationError`` around
``Runner.run`` (as the integration guide promises), a Memtrace error raised in a tool is
re-raised as an instance of a class that derives from both its own class and
``AgentsException``: it is still an ``AuthenticationError`` (``.status_code``,
``.message``), and the Agents SDK lets it through unchanged.
"""

from __future__ import annotations

import threading

from agents.exceptions import AgentsException

from memtrace import MemtraceError

_classes: dict[type[MemtraceError], type[MemtraceError]] = {}
_lock = threading.Lock()


def _crossing_class(cls: type[MemtraceError]) -> type[MemtraceError]:
    with _lock:
        found = _classes.get(cls)
        if found is None:
            found = type(
                cls.__name__,
                (cls, AgentsException),
                {"__module__": cls.__module__, "__doc__": cls.__doc__},
            )
            _classes[cls] = found
        return found


def crossing_runner(error: MemtraceError) -> MemtraceError:
    """``error`` as an exception ``Runner.run`` re-raises as is, of a subclass of its class."""
    if isinstance(error, AgentsException):
        return error
    clone = _crossing_class(type(error)).__new__(_crossing_class(type(error)))
    clone.__dict__.update(error.__dict__)
    clone.args = error.args
    clone.run_data = None  # type: ignore[attr-defined]
    return clone
