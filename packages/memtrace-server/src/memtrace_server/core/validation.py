"""The reference's input patterns and their error messages."""

from __future__ import annotations

import re

from memtrace_server.core.errors import BadRequest

ID_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]{0,127}$")
TYPE_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]{0,63}$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_.\-]{1,64}$")

ID_FORMAT = "invalid ID format: must be alphanumeric with underscores/hyphens, max 128 chars"
TYPE_FORMAT = "invalid type format: must be alphanumeric with underscores, max 64 chars"
TAG_FORMAT = "invalid tag format: must be alphanumeric with underscores/hyphens/dots, max 64 chars"


def id_error(field: str, value: str) -> str | None:
    """The reference's message when ``value`` is not a valid id, else None."""
    return None if ID_RE.match(value) else f"invalid {field}: {ID_FORMAT}"


def type_error(field: str, value: str) -> str | None:
    """The reference's message when ``value`` is not a valid type name, else None."""
    return None if TYPE_RE.match(value) else f"invalid {field}: {TYPE_FORMAT}"


def tag_error(value: str) -> str | None:
    """The reference's message when ``value`` is not a valid tag, else None."""
    return None if TAG_RE.match(value) else f"invalid tag '{value}': {TAG_FORMAT}"


def check_id(field: str, value: str) -> str:
    """Return ``value`` if it is a valid id, else raise 400."""
    message = id_error(field, value)
    if message:
        raise BadRequest(message)
    return value


def check_type(field: str, value: str) -> str:
    """Return ``value`` if it is a valid type name, else raise 400."""
    message = type_error(field, value)
    if message:
        raise BadRequest(message)
    return value


def check_tags(values: list[str]) -> tuple[str, ...]:
    """Return the tags if each is valid, else raise 400 naming the first bad one."""
    for tag in values:
        message = tag_error(tag)
        if message:
            raise BadRequest(message)
    return tuple(values)


MAX_KEY_CHARS = 200
MAX_METADATA_FILTER_FIELDS = 16
KEY_FORMAT = f"1 to {MAX_KEY_CHARS} characters, no control characters"


def _has_control(value: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)


def key_error(value: str) -> str | None:
    """Why ``value`` is not a valid memory key, else None."""
    if len(value) > MAX_KEY_CHARS or _has_control(value):
        return f"invalid key: {KEY_FORMAT}"
    return None


def metadata_filter_error(value: object) -> str | None:
    """Why ``value`` is not a valid metadata filter (an object of at most 16 top-level
    fields, each a string, number, boolean or null), else None."""
    if not isinstance(value, dict):
        return "invalid metadata filter: must be a JSON object of field: value"
    if len(value) > MAX_METADATA_FILTER_FIELDS:
        return f"invalid metadata filter: at most {MAX_METADATA_FILTER_FIELDS} fields"
    for field, wanted in value.items():
        if not field or len(field) > MAX_KEY_CHARS or _has_control(field):
            return f"invalid metadata filter field {field!r}: {KEY_FORMAT}"
        if not isinstance(wanted, str | int | float | bool | None):
            return (
                f"invalid metadata filter field {field!r}: the value must be a string, number,"
                " boolean or null (top-level fields only)"
            )
        if isinstance(wanted, int) and not -(2**63) <= wanted < 2**63:
            return f"invalid metadata filter field {field!r}: integer out of range"
    return None
