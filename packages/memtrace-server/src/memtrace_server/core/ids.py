"""Identifier formats: API keys, orgs, agents, sessions and memories."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import re

API_KEY_RE = re.compile(r"^mtk_[A-Za-z0-9_-]{43}=$")


def new_api_key() -> str:
    """A fresh API key: ``mtk_`` and 32 random bytes in padded url-safe base64."""
    return "mtk_" + base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def key_digest(key: str) -> str:
    """The SHA-256 hex digest under which a key is stored; the key itself never is."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _random_hex(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def new_org_id() -> str:
    """``org_`` and 24 random lowercase hex characters."""
    return _random_hex("org_")


def new_agent_id() -> str:
    """``agent_`` and 24 random lowercase hex characters."""
    return _random_hex("agent_")


def new_session_id() -> str:
    """``sess_`` and 24 random lowercase hex characters."""
    return _random_hex("sess_")


def new_memory_id(time_ns: int) -> str:
    """``mem_`` + 16 hex digits of the memory's time in ns + 10 random hex digits.

    Ids of memories written at different nanoseconds sort like their times.
    """
    # Uniqueness, not secrecy (every read is scoped by org): the process's PRNG, seeded
    # from the OS, saves a system call per memory on the batch path.
    return f"mem_{time_ns & 0xFFFFFFFFFFFFFFFF:016x}{random.getrandbits(40):010x}"


_MEMORY_ID = re.compile(r"^mem_([0-9a-f]{16})[0-9a-f]{10}$")


def memory_id_time(memory_id: str) -> int | None:
    """The time in ns that a ``new_memory_id`` id carries, or None for another format.

    A memory written with a client-supplied ``time`` keeps the time of its id, so this
    is where to look first, not a promise.
    """
    match = _MEMORY_ID.match(memory_id)
    return int(match.group(1), 16) if match else None
