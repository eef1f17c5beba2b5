"""Per-org store routing: an org bound to its own store, sealed with the master key."""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from memtrace_server.core.records import MemoryFilter
from memtrace_server.storage.registry import store_from_url
from memtrace_server.storage.secrets import SecretError, mask_url, parse_master_key, seal, unseal

from conftest import LiveServer, memtrace_cli, new_cli_key

MASTER = base64.b64encode(bytes(range(32))).decode()


def test_sealing_binds_to_the_org() -> None:
    key = parse_master_key(MASTER)
    cipher, nonce = seal(key, "org_a", "postgresql://u:secret@db/a")
    assert b"secret" not in cipher
    assert unseal(key, "org_a", cipher, nonce) == "postgresql://u:secret@db/a"
    with pytest.raises(SecretError):
        unseal(key, "org_b", cipher, nonce)  # copied to another org: refused
    with pytest.raises(SecretError):
        unseal(os.urandom(32), "org_a", cipher, nonce)
    for bad, message in (
        (None, "not set"),
        ("%%%", "not valid base64"),
        (base64.b64encode(b"short").decode(), "32 bytes"),
    ):
        with pytest.raises(SecretError, match=message):
            parse_master_key(bad)
    assert mask_url("postgresql://u:secret@db:5432/a") == "postgresql://u:****@db:5432/a"
    assert mask_url("sqlite:///data/x.db") == "sqlite:///data/x.db"


@pytest.fixture(params=["sqlite", "postgres"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """The default store and a second store for one org."""
    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        return cluster.new_database(), cluster.new_database()
    return (
        f"sqlite:///{(tmp_path / 'default.db').as_posix()}",
        f"sqlite:///{(tmp_path / 'own.db').as_posix()}",
    )


@pytest.fixture
def server(
    urls: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LiveServer]:
    monkeypatch.setenv("MEMTRACE_MASTER_KEY", MASTER)
    live = LiveServer(tmp_path / "live", store_url=urls[0]).start()
    try:
        yield live
    finally:
        live.stop()


def contents_in(url: str, org_id: str) -> list[str]:
    async def read() -> list[str]:
        store = store_from_url(url)
        await store.open()
        try:
            return [m.content for m in await store.query_memories(org_id, MemoryFilter(limit=100))]
        finally:
            await store.close()

    return asyncio.run(read())


def test_org_bound_to_its_own_store(server: LiveServer, urls: tuple[str, str]) -> None:
    default_url, own_url = urls
    data = server.data_dir
    org_a, key_a = new_cli_key(data, store_url=default_url)
    org_b, key_b = new_cli_key(data, store_url=default_url)

    def remember(key: str, text: str) -> int:
        return httpx.post(
            server.url + "/api/v1/memories",
            json={"agent_id": "bot", "content": text},
            headers={"x-api-key": key},
        ).status_code

    assert remember(key_b, "before binding") == 201
    out = memtrace_cli(
        "org", "set-store", org_b, "--url", own_url, data_dir=data, store_url=default_url
    )
    assert out.stdout.strip() == f"Store bound to {org_b}"
    shown = memtrace_cli(
        "org", "show-store", org_b, data_dir=data, store_url=default_url
    ).stdout.strip()
    assert shown == mask_url(own_url)
    assert (
        "uses the default store"
        in memtrace_cli("org", "show-store", org_a, data_dir=data, store_url=default_url).stdout
    )

    time.sleep(1.1)  # the running server re-reads bindings once a second: no restart
    assert remember(key_b, "after binding") == 201
    assert remember(key_a, "org a stays home") == 201
    assert contents_in(own_url, org_b) == ["after binding"]
    assert "after binding" not in contents_in(default_url, org_b)
    assert contents_in(default_url, org_a) == ["org a stays home"]
    assert contents_in(own_url, org_a) == []
    listed = httpx.get(server.url + "/api/v1/memories", headers={"x-api-key": key_b}).json()
    assert [m["content"] for m in listed["memories"]] == ["after binding"]
    session = httpx.post(
        server.url + "/api/v1/sessions", json={"agent_id": "bot"}, headers={"x-api-key": key_b}
    )
    assert session.status_code == 201

    # the sealed URL copied onto org A's row does not open: A fails closed, never reaching B's store
    _copy_binding(default_url, org_b, org_a)
    time.sleep(1.1)
    refused = httpx.get(server.url + "/api/v1/memories", headers={"x-api-key": key_a})
    assert refused.status_code == 503 and "error" in refused.json()
    assert contents_in(own_url, org_a) == []

    gone = memtrace_cli("org", "remove-store", org_b, data_dir=data, store_url=default_url)
    assert gone.stdout.strip() == f"Store binding removed for {org_b}"
    time.sleep(1.1)
    back = httpx.get(server.url + "/api/v1/memories", headers={"x-api-key": key_b}).json()
    assert [m["content"] for m in back["memories"]] == ["before binding"]


def test_set_store_refuses_without_master_key_or_unreachable_store(
    urls: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default_url, _ = urls
    monkeypatch.delenv("MEMTRACE_MASTER_KEY", raising=False)
    org, _ = new_cli_key(tmp_path, store_url=default_url)
    no_key = memtrace_cli(
        "org",
        "set-store",
        org,
        "--url",
        "sqlite:///x.db",
        data_dir=tmp_path,
        store_url=default_url,
        check=False,
    )
    assert no_key.returncode == 1 and "MEMTRACE_MASTER_KEY is not set" in no_key.stderr
    monkeypatch.setenv("MEMTRACE_MASTER_KEY", MASTER)
    unreachable = memtrace_cli(
        "org",
        "set-store",
        org,
        "--url",
        "postgresql://nobody:pw@127.0.0.1:1/x",
        data_dir=tmp_path,
        store_url=default_url,
        check=False,
    )
    assert (
        unreachable.returncode == 1
        and "cannot use postgresql://nobody:****@127.0.0.1:1/x" in unreachable.stderr
    )
    assert "pw@" not in unreachable.stderr


def _copy_binding(default_url: str, source: str, target: str) -> None:
    sql = (
        "INSERT INTO org_stores (org_id, url_cipher, url_nonce, updated_at)"
        " SELECT {p}, url_cipher, url_nonce, updated_at FROM org_stores WHERE org_id = {p}"
    )
    if default_url.startswith("sqlite"):
        with sqlite3.connect(default_url[len("sqlite:///") :]) as conn:
            conn.execute(sql.format(p="?"), (target, source))
    else:
        with psycopg.connect(default_url, autocommit=True) as conn:
            conn.execute(sql.format(p="%s"), (target, source))
