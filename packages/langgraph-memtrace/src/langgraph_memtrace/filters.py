"""LangGraph search filters, split into what the server checks and what is checked here.

Memtrace filters metadata by exact equality of top-level scalars. A condition on a value
field that is such an equality (``{"color": "red"}`` or ``{"color": {"$eq": "red"}}``)
becomes a filter on the field's mirror (``lgv_color``) and runs on the server. Every other
condition — ``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``, nested objects, lists, null,
strings longer than the mirror keeps — is checked here, on every candidate the server-side part
lets through, with the semantics of LangGraph's ``InMemoryStore`` except that equality is
JSON equality, as on the server (``true`` is not ``1``), and an ordering between a number
and a string (or a missing field) does not match instead of raising. Any other operator is
a ``ValueError`` before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langgraph_memtrace.items import mirror_field, mirrorable

OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})


@dataclass(frozen=True)
class SplitFilter:
    """A LangGraph filter as exact server-side metadata equalities plus local conditions."""

    server: dict[str, Any] = field(default_factory=dict)
    local: dict[str, Any] = field(default_factory=dict)

    def matches(self, value: Mapping[str, Any]) -> bool:
        """Whether an item's value meets the local conditions."""
        return all(_matches(value.get(name), wanted) for name, wanted in self.local.items())


def split_filter(conditions: Mapping[str, Any] | None, *, room: int) -> SplitFilter:
    """Split ``conditions``, sending at most ``room`` equalities to the server."""
    split = SplitFilter()
    for name, wanted in (conditions or {}).items():
        _check_operators(wanted)
        equal = _exact_equality(wanted)
        # null is checked here: a missing field equals it, which no server filter says.
        if (
            len(split.server) < room
            and equal is not None
            and equal[0] is not None
            and mirrorable(name, equal[0])
        ):
            split.server[mirror_field(name)] = equal[0]
        else:
            split.local[name] = wanted
    return split


def _exact_equality(wanted: Any) -> tuple[Any] | None:
    if isinstance(wanted, Mapping):
        if set(wanted) == {"$eq"}:
            return (wanted["$eq"],)
        return None
    if isinstance(wanted, (list, tuple)):
        return None
    return (wanted,)


def _check_operators(wanted: Any) -> None:
    if isinstance(wanted, Mapping):
        for name, inner in wanted.items():
            if isinstance(name, str) and name.startswith("$"):
                if name not in OPERATORS:
                    raise ValueError(
                        f"unsupported filter operator {name!r}: use one of "
                        f"{', '.join(sorted(OPERATORS))}"
                    )
            else:
                _check_operators(inner)
    elif isinstance(wanted, (list, tuple)):
        for inner in wanted:
            _check_operators(inner)


def _matches(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, Mapping):
        if any(isinstance(k, str) and k.startswith("$") for k in wanted):
            return all(_compare(actual, op, operand) for op, operand in wanted.items())
        return isinstance(actual, Mapping) and all(
            _matches(actual.get(k), v) for k, v in wanted.items()
        )
    if isinstance(wanted, (list, tuple)):
        return (
            isinstance(actual, (list, tuple))
            and len(actual) == len(wanted)
            and all(_matches(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    return _equal(actual, wanted)


def _equal(actual: Any, wanted: Any) -> bool:
    # JSON equality, as the server applies it: true is not 1, while 1 equals 1.0.
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return isinstance(actual, bool) and isinstance(wanted, bool) and actual == wanted
    return bool(actual == wanted)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _compare(actual: Any, operator: str, operand: Any) -> bool:
    if operator in ("$eq", "$ne"):
        return _matches(actual, operand) == (operator == "$eq")
    # Orderings compare numbers with numbers and strings with strings; anything else
    # (a missing field included) does not match, rather than raising mid-search.
    if not (_number(actual) and _number(operand)) and not (
        isinstance(actual, str) and isinstance(operand, str)
    ):
        return False
    if operator == "$gt":
        return bool(actual > operand)
    if operator == "$gte":
        return bool(actual >= operand)
    if operator == "$lt":
        return bool(actual < operand)
    return bool(actual <= operand)
