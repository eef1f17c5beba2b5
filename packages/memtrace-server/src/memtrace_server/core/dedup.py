"""The reference's dedup key derivation."""

from __future__ import annotations

import hashlib

CONTENT_PREFIX_BYTES = 200


def dedup_key(agent_id: str, event_type: str, content: str) -> str:
    """First 32 hex chars of SHA-256(agent_id | event_type | first 200 bytes of content).

    The content is cut by UTF-8 bytes, not characters, exactly as the reference does.
    """
    data = f"{agent_id}|{event_type}|".encode() + content.encode("utf-8")[:CONTENT_PREFIX_BYTES]
    return hashlib.sha256(data).hexdigest()[:32]
