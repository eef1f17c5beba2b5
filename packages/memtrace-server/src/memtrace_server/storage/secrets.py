"""Envelope encryption of per-org store URLs: AES-256-GCM under the master key.

The org id is the associated data, so a sealed URL copied to another org's row fails
to open instead of routing that org to someone else's store.
"""

from __future__ import annotations

import base64
import binascii
import os
from urllib.parse import urlsplit, urlunsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class SecretError(ValueError):
    """The master key is missing or malformed, or a sealed value does not open."""


def parse_master_key(text: str | None) -> bytes:
    """The 32-byte key from ``MEMTRACE_MASTER_KEY`` (standard base64)."""
    if not text:
        raise SecretError(
            "MEMTRACE_MASTER_KEY is not set; generate one with `memtrace keygen master`"
        )
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretError(f"MEMTRACE_MASTER_KEY is not valid base64: {exc}") from exc
    if len(key) != 32:
        raise SecretError(f"master key must be 32 bytes, got {len(key)}")
    return key


def seal(master_key: bytes, org_id: str, plaintext: str) -> tuple[bytes, bytes]:
    """Encrypt ``plaintext`` for ``org_id``; returns (ciphertext with tag, nonce)."""
    nonce = os.urandom(NONCE_BYTES)
    return AESGCM(master_key).encrypt(nonce, plaintext.encode(), org_id.encode()), nonce


def unseal(master_key: bytes, org_id: str, ciphertext: bytes, nonce: bytes) -> str:
    """Decrypt a value sealed for ``org_id``; SecretError if the key, org or bytes differ."""
    try:
        return AESGCM(master_key).decrypt(nonce, ciphertext, org_id.encode()).decode()
    except (InvalidTag, ValueError) as exc:
        raise SecretError(f"the store binding of org '{org_id}' cannot be decrypted") from exc


def mask_url(url: str) -> str:
    """The URL with its password replaced by asterisks."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:****@" if parts.username else ":****@"
    return urlunsplit(parts._replace(netloc=user + host))
