"""Settings, read once from a TOML file and ``MEMTRACE_*`` variables, then passed down."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_CONFIG_PATHS = (
    Path("memtrace.toml"),
    Path("/etc/memtrace/memtrace.toml"),
    Path("~/.memtrace/memtrace.toml"),
)


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range."""


@dataclass(frozen=True)
class Settings:
    """Every setting of the server, with its TOML ``section.key`` in the comment."""

    host: str = "0.0.0.0"  # server.host
    port: int = 9100  # server.port
    max_body_bytes: int = 4 * 1024 * 1024  # server.max_body_bytes
    max_batch: int = 1000  # server.max_batch
    shutdown_timeout: int = 30  # server.shutdown_timeout (seconds in-flight requests get)
    keep_alive_timeout: int = 30  # server.keep_alive_timeout (idle keep-alive connections, s)
    workers: int = 1  # server.workers (processes serving one store)
    data_dir: Path = Path("data")  # store.data_dir
    store_url: str = ""  # store.url (default: sqlite file in data_dir)
    store_synchronous: str = "FULL"  # store.synchronous (FULL survives power loss)
    store_ingest_process: bool = True  # store.ingest_process (SQLite: inserts in a process)
    log_level: str = "info"  # log.level
    log_format: str = "json"  # log.format: json | console
    auth_enabled: bool = True  # auth.enabled
    key_cache_seconds: float = 1.0  # auth.key_cache_seconds (how long a key lookup is reused)
    dedup_enabled: bool = True  # dedup.enabled
    search_semantic: bool = (
        False  # search.semantic (hybrid search; needs memtrace-server[semantic])
    )
    dedup_window_hours: int = 24  # dedup.window_hours
    purge_interval_seconds: int = 300  # retention.purge_interval_seconds
    max_content_bytes: int = 65536  # limits.max_content_bytes
    max_metadata_bytes: int = 16384  # limits.max_metadata_bytes
    max_tags: int = 32  # limits.max_tags
    rate_per_second: float = 0.0  # limits.rate_per_second (per key and process; 0 = off)
    rate_burst: int = 100  # limits.rate_burst
    cors_origins: str = ""  # server.cors_origins (comma list; empty = CORS off)
    console_enabled: bool = True  # console.enabled (the web console under /ui/)
    console_idle_hours: float = 8.0  # console.idle_hours (a sign-in ends after this idle time)
    console_secure_cookie: bool = False  # console.secure_cookie (always mark cookies Secure)
    master_key: str = ""  # MEMTRACE_MASTER_KEY only, never from a file

    @property
    def resolved_store_url(self) -> str:
        """The store URL, defaulting to ``memtrace.db`` inside the data directory."""
        if self.store_url:
            return self.store_url
        return f"sqlite:///{(self.data_dir / 'memtrace.db').as_posix()}"


# (section, key) -> field name
_KEYS: dict[tuple[str, str], str] = {
    ("server", "host"): "host",
    ("server", "port"): "port",
    ("server", "max_body_bytes"): "max_body_bytes",
    ("server", "max_batch"): "max_batch",
    ("store", "data_dir"): "data_dir",
    ("store", "url"): "store_url",
    ("store", "synchronous"): "store_synchronous",
    ("store", "ingest_process"): "store_ingest_process",
    ("log", "level"): "log_level",
    ("log", "format"): "log_format",
    ("auth", "enabled"): "auth_enabled",
    ("search", "semantic"): "search_semantic",
    ("auth", "key_cache_seconds"): "key_cache_seconds",
    ("auth", "db_path"): "auth_db_path",
    ("server", "shutdown_timeout"): "shutdown_timeout",
    ("server", "keep_alive_timeout"): "keep_alive_timeout",
    ("server", "workers"): "workers",
    ("dedup", "enabled"): "dedup_enabled",
    ("dedup", "window_hours"): "dedup_window_hours",
    ("retention", "purge_interval_seconds"): "purge_interval_seconds",
    ("limits", "max_content_bytes"): "max_content_bytes",
    ("limits", "max_metadata_bytes"): "max_metadata_bytes",
    ("limits", "max_tags"): "max_tags",
    ("limits", "rate_per_second"): "rate_per_second",
    ("limits", "rate_burst"): "rate_burst",
    ("server", "cors_origins"): "cors_origins",
    ("console", "enabled"): "console_enabled",
    ("console", "idle_hours"): "console_idle_hours",
    ("console", "secure_cookie"): "console_secure_cookie",
}
_TYPES = {f.name: f.type for f in fields(Settings)} | {"auth_db_path": "str"}


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = _TYPES[name]
    try:
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "Path":
            return Path(str(value)).expanduser()
        return str(value)
    except ValueError:
        raise ConfigError(f"{source}: invalid value {value!r} for {name}") from None


def _validate(s: Settings) -> Settings:
    if not 0 < s.port < 65536:
        raise ConfigError(f"server.port must be 1..65535, got {s.port}")
    if s.max_body_bytes < 1024:
        raise ConfigError("server.max_body_bytes must be at least 1024")
    if not 1 <= s.workers <= 64:
        raise ConfigError("server.workers must be 1..64")
    if s.max_batch < 1:
        raise ConfigError("server.max_batch must be at least 1")
    if s.store_synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
        raise ConfigError("store.synchronous must be NORMAL, FULL or EXTRA")
    if s.log_level.lower() not in ("debug", "info", "warn", "warning", "error"):
        raise ConfigError("log.level must be debug, info, warn or error")
    if s.log_format not in ("json", "console"):
        raise ConfigError("log.format must be json or console")
    if min(s.max_content_bytes, s.max_metadata_bytes, s.max_tags, s.rate_burst) < 1:
        raise ConfigError("limits must be at least 1")
    if not 0 <= s.key_cache_seconds <= 60:
        raise ConfigError("auth.key_cache_seconds must be 0..60")
    if s.rate_per_second < 0:
        raise ConfigError("limits.rate_per_second must be 0 (off) or more")
    if s.purge_interval_seconds < 1:
        raise ConfigError("retention.purge_interval_seconds must be at least 1")
    if not 0 < s.console_idle_hours <= 24 * 30:
        raise ConfigError("console.idle_hours must be more than 0 and at most 720")
    if s.dedup_window_hours < 1:
        raise ConfigError("dedup.window_hours must be at least 1")
    return s


def load_settings(
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults, then the first TOML file found, then ``MEMTRACE_SECTION_KEY``, then overrides.

    ``config_path``, when given, must exist. ``overrides`` with value None are ignored.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = config_path
    if path is None:
        path = next(
            (p.expanduser() for p in DEFAULT_CONFIG_PATHS if p.expanduser().is_file()), None
        )
    elif not path.is_file():
        raise ConfigError(f"config file {path} not found")
    if path is not None:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        for section, table in document.items():
            if not isinstance(table, dict):
                continue
            for key, value in table.items():
                name = _KEYS.get((section, key))
                if name is not None:
                    values[name] = _coerce(name, value, str(path))
    for (section, key), name in _KEYS.items():
        variable = f"MEMTRACE_{section.upper()}_{key.upper()}"
        if variable in env:
            values[name] = _coerce(name, env[variable], variable)
    if not values.get("store_url") and values.get("auth_db_path"):
        values["store_url"] = f"sqlite:///{Path(values['auth_db_path']).as_posix()}"
    values.pop("auth_db_path", None)
    if env.get("MEMTRACE_MASTER_KEY"):
        values["master_key"] = env["MEMTRACE_MASTER_KEY"]
    for name, value in overrides.items():
        if value is not None:
            values[name] = _coerce(name, value, "command line")
    return _validate(replace(Settings(), **values))


def settings_to_json(settings: Settings) -> str:
    """The settings as JSON, to hand to worker processes (see ``settings_from_json``)."""
    values = {f.name: getattr(settings, f.name) for f in fields(Settings)}
    values["data_dir"] = str(settings.data_dir)
    return json.dumps(values)


def settings_from_json(text: str) -> Settings:
    """Settings that ``settings_to_json`` wrote, validated again."""
    values = json.loads(text)
    values["data_dir"] = Path(values["data_dir"])
    return _validate(replace(Settings(), **values))
