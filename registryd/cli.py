"""``registryd serve | migrate``. The only place the event loop (uvloop) is set up."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import getpass
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import uvloop
from aiohttp import web

from registryd import __version__
from registryd.app import create_app
from registryd.config import ConfigError, Settings, parse_size_bytes
from registryd.db.embedded import (
    DATABASE_NAME,
    EmbeddedPostgres,
    database_url,
    ensure_database,
)
from registryd.db.migrate import apply_migrations
from registryd.db.pool import create_pool
from registryd.domain import users
from registryd.domain.services import Services
from registryd.errors import RegistryError
from registryd.storage.filesystem import FilesystemBackend
from registryd.workers import serve_workers

log = logging.getLogger("registryd")


def _size(text: str) -> int:
    try:
        return parse_size_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="registryd", description="An async container image registry."
    )
    parser.add_argument("--version", action="version", version=f"registryd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, help="blobs and the embedded database live here")
    common.add_argument(
        "--database-url",
        help="postgresql:// URL of an external server (default: embedded in --data-dir)",
    )
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    serve = sub.add_parser("serve", parents=[common], help="run the registry")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 5000)")
    serve.add_argument("--max-layer-bytes", type=_size, help="largest layer accepted (0: no limit)")
    serve.add_argument("--public-host", help="host[:port] clients reach this registry at")
    serve.add_argument("--workers", type=int, help="server processes sharing the port (default 1)")

    sub.add_parser("migrate", parents=[common], help="apply database migrations and exit")

    create_user = sub.add_parser(
        "create-user",
        parents=[common],
        help="create an account (or reset its password); the password is read from stdin",
    )
    create_user.add_argument("username")
    create_user.add_argument("--admin", action="store_true", help="may write anywhere")
    create_user.add_argument("--email")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    flags = {
        name: getattr(args, name, None)
        for name in (
            "data_dir",
            "database_url",
            "log_level",
            "host",
            "port",
            "max_layer_bytes",
            "public_host",
            "workers",
        )
    }
    if flags["port"] is not None and not 0 <= flags["port"] <= 65535:
        raise ConfigError(f"--port={flags['port']}: must be between 0 and 65535")
    if flags["workers"] is not None and flags["workers"] < 1:
        raise ConfigError(f"--workers={flags['workers']}: must be at least 1")
    if flags["database_url"] == "":
        flags["database_url"] = None
    return Settings.from_env(**flags)


class _Database(contextlib.AbstractContextManager["_Database"]):
    """The configured PostgreSQL, or the embedded one started (and later stopped) here."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedPostgres | None = None
        self.url = settings.database_url or ""

    def __enter__(self) -> _Database:
        if not self.url:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            self.embedded = EmbeddedPostgres(self.settings.embedded_pgdata.resolve())
            server_url = self.embedded.start()
            asyncio.run(ensure_database(server_url, DATABASE_NAME))
            self.url = database_url(server_url, DATABASE_NAME)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.embedded is not None:
            self.embedded.stop()


async def _migrate(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()


async def _create_user(settings: Settings, args: argparse.Namespace, password: str) -> str:
    assert settings.database_url is not None
    await _migrate(settings.database_url)
    pool = await create_pool(settings.database_url, settings)
    try:
        svc = Services(pool, FilesystemBackend(settings.storage_root), settings, b"")
        created = await users.ensure_user(
            svc, args.username, password, is_admin=args.admin, email=args.email
        )
    finally:
        await pool.close()
    return "created" if created else "updated"


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\n")


async def _serve(settings: Settings, *, migrate: bool = True, reuse_port: bool = False) -> None:
    assert settings.database_url is not None
    if migrate:
        applied = await _migrate(settings.database_url)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
    runner = web.AppRunner(create_app(settings), access_log=logging.getLogger("registryd.access"))
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port or None)
    await site.start()
    for sock in runner.addresses:
        log.info("registryd %s listening on %s", __version__, sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()


def _run_worker(settings: Settings) -> int:
    uvloop.run(_serve(settings, migrate=False, reuse_port=True))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"registryd: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        with _Database(settings) as db:
            settings = dataclasses.replace(settings, database_url=db.url)
            if args.command == "create-user":
                outcome = asyncio.run(_create_user(settings, args, _read_password()))
                print(f"user {args.username} {outcome}")
                return 0
            if args.command == "migrate":
                applied = asyncio.run(_migrate(db.url))
                print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m}" for m in applied))
                return 0
            if settings.workers > 1:
                applied = asyncio.run(_migrate(db.url))  # once, before any worker serves
                if applied:
                    log.info("applied migrations: %s", ", ".join(applied))
                return serve_workers(settings, _run_worker)
            uvloop.run(_serve(settings))
            return 0
    except RegistryError as exc:
        print(f"registryd: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"registryd: cannot start: {exc}", file=sys.stderr)
        return 1
