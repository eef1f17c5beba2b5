"""The ``memtrace`` command: serve, keygen, org, key, db."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import click

from memtrace_server import __version__
from memtrace_server.config import ConfigError, Settings, load_settings
from memtrace_server.core.errors import ApiError
from memtrace_server.core.timefmt import format_rfc3339
from memtrace_server.service.admin import Admin, AdminError
from memtrace_server.storage.registry import store_from_url, stores_from_url

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def store_options(fn: F) -> F:
    """``--config``, ``--data-dir`` and ``--store-url``, shared by every command."""
    fn = click.option(
        "--store-url", default=None, help="Store URL (default: sqlite file in the data dir)."
    )(fn)
    fn = click.option(
        "--data-dir", type=click.Path(path_type=Path), default=None, help="Data directory."
    )(fn)
    fn = click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help="memtrace.toml to read.",
    )(fn)
    return fn


def _settings(
    config_path: Path | None, data_dir: Path | None, store_url: str | None, **more: Any
) -> Settings:
    try:
        return load_settings(config_path, data_dir=data_dir, store_url=store_url, **more)
    except ConfigError as exc:
        _fail(str(exc))
        raise AssertionError from exc  # unreachable


def _with_admin(settings: Settings, action: Callable[[Admin], Awaitable[T]]) -> T:
    """Open the configured stores, run ``action`` with an Admin over them, close them."""

    async def run() -> T:
        stores = stores_from_url(
            settings.resolved_store_url,
            synchronous=settings.store_synchronous,
            master_key=settings.master_key,
        )
        await stores.open()
        try:
            return await action(
                Admin(
                    stores,
                    master_key=stores.master_key,
                    key_cache_seconds=settings.key_cache_seconds,
                )
            )
        finally:
            await stores.close()

    try:
        return asyncio.run(run())
    except (AdminError, ApiError, ValueError) as exc:
        _fail(str(exc))
        raise AssertionError from exc  # unreachable


def admin_command(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async ``fn(admin, **args)`` against the configured store."""

    @store_options
    @wraps(fn)
    def command(
        config_path: Path | None, data_dir: Path | None, store_url: str | None, **kwargs: Any
    ) -> None:
        settings = _settings(config_path, data_dir, store_url)
        _with_admin(settings, lambda admin: fn(admin, **kwargs))

    return command


@click.group(invoke_without_command=True)
@click.version_option(__version__, prog_name="memtrace")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Memtrace: memory for AI agents. Without a command, runs ``serve``."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


@main.command()
@click.option("--host", default=None, help="Address to listen on (default 0.0.0.0).")
@click.option("--port", type=int, default=None, help="Port (default 9100).")
@click.option(
    "--workers", type=int, default=None, help="Server processes on one store (default 1)."
)
@store_options
def serve(
    host: str | None,
    port: int | None,
    workers: int | None,
    config_path: Path | None,
    data_dir: Path | None,
    store_url: str | None,
) -> None:
    """Run the HTTP server. On an empty store, create org_default and print its admin key."""
    from memtrace_server.api.app import create_app
    from memtrace_server.logs import configure_logging

    settings = _settings(config_path, data_dir, store_url, host=host, port=port, workers=workers)
    configure_logging(settings.log_level, settings.log_format)
    key = _with_admin(settings, lambda admin: admin.bootstrap())
    if key:
        bar = "=" * 58
        click.echo(
            f"{bar}\n  FIRST RUN: Save your admin API key (shown only once)\n  API Key: {key}\n{bar}"
        )
    click.echo(
        f"memtrace {__version__} listening on http://{settings.host}:{settings.port}", err=True
    )
    sys.stdout.flush()
    if settings.workers > 1:
        from memtrace_server.api.app import WORKER_SETTINGS_VARIABLE
        from memtrace_server.config import settings_to_json

        # Each worker builds its own app (and opens its own connections) from these.
        os.environ[WORKER_SETTINGS_VARIABLE] = settings_to_json(settings)
        run_app("memtrace_server.api.app:create_worker_app", settings, factory=True)
    else:
        run_app(create_app(settings), settings)


def run_app(app: Any, settings: Settings, *, factory: bool = False) -> None:
    """Serve an ASGI app the way ``memtrace serve`` does (benchmarks reuse it for floors).

    With ``server.workers`` above 1, ``app`` is an import string of an app factory.
    """
    import uvicorn

    uvicorn.run(
        app,
        factory=factory,
        workers=settings.workers if factory else None,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.shutdown_timeout,
        # Longer than most clients and load balancers keep idle connections, so the server
        # is not the side that closes one just as a request is sent on it.
        timeout_keep_alive=settings.keep_alive_timeout,
    )


@main.group()
def keygen() -> None:
    """Generate secrets."""


@keygen.command("master")
def keygen_master() -> None:
    """Print a new MEMTRACE_MASTER_KEY: 32 random bytes in standard base64."""
    click.echo(base64.b64encode(os.urandom(32)).decode())


@main.group()
def org() -> None:
    """Manage organisations."""


@org.command("create")
@click.argument("name")
@admin_command
async def org_create(admin: Admin, name: str) -> None:
    """Create an organisation."""
    record = await admin.create_org(name)
    click.echo(f"Organization created\n  id:   {record.id}\n  name: {record.name}")


@org.command("list")
@admin_command
async def org_list(admin: Admin) -> None:
    """List organisations, oldest first."""
    click.echo(f"{'ID':<32}{'NAME':<30}CREATED")
    for record in await admin.list_orgs():
        click.echo(f"{record.id:<32}{record.name:<30}{format_rfc3339(record.created_at_ns)}")


@org.command("delete")
@click.argument("org_id")
@click.option(
    "--cascade", is_flag=True, help="Also delete its keys, agents, sessions and memories."
)
@admin_command
async def org_delete(admin: Admin, org_id: str, cascade: bool) -> None:
    """Delete an organisation."""
    await admin.delete_org(org_id, cascade=cascade)
    click.echo(f"Organization {org_id} deleted")


@org.command("set-store")
@click.argument("org_id")
@click.option("--url", required=True, help="Store URL: postgresql://… or sqlite:///…")
@admin_command
async def org_set_store(admin: Admin, org_id: str, url: str) -> None:
    """Keep an org's agents, sessions and memories in a store of its own.

    The URL is encrypted with MEMTRACE_MASTER_KEY; running servers pick the change up
    within a second. Data already written stays where it is.
    """
    await admin.set_org_store(org_id, url, store_from_url)
    click.echo(f"Store bound to {org_id}")


@org.command("show-store")
@click.argument("org_id")
@admin_command
async def org_show_store(admin: Admin, org_id: str) -> None:
    """Show an org's store URL with its password masked."""
    click.echo(await admin.show_org_store(org_id))


@org.command("remove-store")
@click.argument("org_id")
@admin_command
async def org_remove_store(admin: Admin, org_id: str) -> None:
    """Send an org back to the default store (its data in the old store stays there)."""
    await admin.remove_org_store(org_id)
    click.echo(f"Store binding removed for {org_id}")


@org.command("set-retention")
@click.argument("org_id")
@click.option(
    "--days",
    type=click.IntRange(min=0),
    required=True,
    help="Keep memories this many days; 0 keeps them forever.",
)
@admin_command
async def org_set_retention(admin: Admin, org_id: str, days: int) -> None:
    """Hide at once, and purge soon after, memories older than N days."""
    await admin.set_retention(org_id, days)
    click.echo(f"Retention of {org_id}: " + (f"{days} days" if days else "forever"))


@main.command("export")
@click.option("--org", "org_id", required=True, help="Organisation id.")
@click.option("--agent", "agent_id", default=None, help="Only this agent (id or name).")
@admin_command
async def export_command(admin: Admin, org_id: str, agent_id: str | None) -> None:
    """Write an org's agents, sessions and memories to stdout as JSON Lines."""
    out = sys.stdout.buffer
    async for line in admin.export(org_id, agent_id):
        out.write(line)
    out.flush()


@main.command("import")
@click.option("--org", "org_id", required=True, help="Organisation id to import into.")
@click.argument("file", type=click.File("rb"))
@admin_command
async def import_command(admin: Admin, org_id: str, file: BinaryIO) -> None:
    """Import a JSON Lines export; anything whose id exists already is skipped."""
    try:
        size = os.fstat(file.fileno()).st_size
    except (OSError, ValueError):
        size = 0
    show = sys.stderr.isatty() and size > 0
    progress = click.progressbar(length=size, label="importing", file=sys.stderr)
    with progress if show else contextlib.nullcontext(progress) as bar:

        def lines() -> Iterator[bytes]:
            for line in file:
                if show:
                    bar.update(len(line))
                yield line

        report = await admin.import_lines(org_id, lines())
    click.echo(
        f"Imported {report.memories} memories, {report.agents} agents, {report.sessions} sessions;"
        f" {report.skipped} already present"
    )
    for error in report.errors:
        click.echo(f"warning: {error}", err=True)


@main.group()
def key() -> None:
    """Manage API keys."""


@key.command("create")
@click.option("--org", "org_id", required=True, help="Organisation id.")
@click.option("--name", required=True, help="Key name, unique within the org.")
@click.option(
    "--permissions",
    default="read,write",
    show_default=True,
    help="Comma list of read, write, admin.",
)
@admin_command
async def key_create(admin: Admin, org_id: str, name: str, permissions: str) -> None:
    """Create a key; it is printed once, alone on the last line."""
    plain, _ = await admin.create_key(org_id, name, permissions)
    click.echo("API key created (shown only once — save it now):")
    click.echo(plain)


@key.command("list")
@click.option("--org", "org_id", required=True, help="Organisation id.")
@admin_command
async def key_list(admin: Admin, org_id: str) -> None:
    """List an organisation's keys (never the keys themselves)."""
    click.echo(f"{'ID':<6}{'NAME':<24}{'PREFIX':<16}{'PERMS':<20}CREATED")
    for record in await admin.list_keys(org_id):
        perms = ",".join(sorted(record.permissions))
        created = format_rfc3339(record.created_at_ns)[:16].replace("T", " ")
        click.echo(
            f"{record.id:<6}{record.name:<24}{record.key_prefix + '…':<16}{perms:<20}{created}"
        )


@key.command("revoke")
@click.argument("key_id", type=int)
@click.option("--org", "org_id", default=None, help="Only revoke if the key belongs to this org.")
@admin_command
async def key_revoke(admin: Admin, key_id: int, org_id: str | None) -> None:
    """Revoke a key; every server using this store refuses it from the next request."""
    await admin.revoke_key(key_id, org_id)
    click.echo(f"Key {key_id} revoked")


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("migrate")
@admin_command
async def db_migrate(admin: Admin) -> None:
    """Apply pending migrations (serve does this at start-up too)."""
    click.echo("Migrations applied")
