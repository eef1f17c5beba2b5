"""Settings: defaults, TOML file, MEMTRACE_* variables, overrides, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from memtrace_server.config import ConfigError, load_settings
from memtrace_server.storage.registry import store_from_url
from memtrace_server.storage.sqlite import SQLiteStore


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert (s.host, s.port, s.dedup_window_hours, s.max_body_bytes) == (
        "0.0.0.0",
        9100,
        24,
        4 * 1024 * 1024,
    )
    assert s.resolved_store_url == "sqlite:///data/memtrace.db"


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    toml = tmp_path / "memtrace.toml"
    toml.write_text(
        '[server]\nport = 9200\nhost = "127.0.0.1"\n[dedup]\nwindow_hours = 6\nenabled = false\n'
        '[auth]\ndb_path = "/srv/m.db"\n[arc]\nurl = "ignored"\n'
    )
    s = load_settings(toml, env={})
    assert (s.port, s.host, s.dedup_window_hours, s.dedup_enabled) == (9200, "127.0.0.1", 6, False)
    assert s.resolved_store_url == "sqlite:////srv/m.db"
    s = load_settings(toml, env={"MEMTRACE_SERVER_PORT": "9300", "MEMTRACE_DEDUP_ENABLED": "true"})
    assert (s.port, s.dedup_enabled) == (9300, True)
    s = load_settings(toml, env={"MEMTRACE_SERVER_PORT": "9300"}, port=9400)
    assert s.port == 9400


@pytest.mark.parametrize(
    "env",
    [
        {"MEMTRACE_SERVER_PORT": "http"},
        {"MEMTRACE_SERVER_PORT": "70000"},
        {"MEMTRACE_DEDUP_ENABLED": "maybe"},
        {"MEMTRACE_LOG_FORMAT": "xml"},
        {"MEMTRACE_STORE_SYNCHRONOUS": "OFF"},
    ],
)
def test_bad_values_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_settings(env=env)


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_store_urls() -> None:
    rel = store_from_url("sqlite:///data/x.db")
    assert isinstance(rel, SQLiteStore) and str(rel.path) == "data/x.db"
    absolute = store_from_url("sqlite:////var/lib/memtrace/x.db")
    assert isinstance(absolute, SQLiteStore) and str(absolute.path) == "/var/lib/memtrace/x.db"
    for bad in ("sqlite://", "mysql://x"):
        with pytest.raises(ValueError):
            store_from_url(bad)
