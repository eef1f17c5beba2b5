"""Items gathered over one turn of the event loop and handed on together as the next
turn begins: one write for a turn's access-log lines, one for its inserts sent to the
SQLite ingest process (and one for its answers)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TurnBatch(Generic[T]):
    """``put`` items; ``sink`` gets the items of a turn in one list, in order, once the loop
    runs its next callbacks (at once where no loop runs), or when ``flush`` is called."""

    def __init__(self, sink: Callable[[list[T]], None]) -> None:
        self.sink = sink
        self._items: list[T] = []

    def put(self, item: T) -> None:
        """Queue ``item`` for this turn's batch."""
        self._items.append(item)
        if len(self._items) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop: now
                self.flush()

    def flush(self) -> None:
        """Hand on what is queued (nothing when nothing is)."""
        items, self._items = self._items, []
        if items:
            self.sink(items)
