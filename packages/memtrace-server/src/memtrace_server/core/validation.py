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
