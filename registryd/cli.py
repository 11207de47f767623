"""``registryd serve | migrate | create-user | gc | scrub | config check``.

The only place uvloop is set up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import getpass
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import uvloop

from registryd import __version__
from registryd.config import (
    ConfigError,
    Resolved,
    Settings,
    env_var,
    flag,
    resolve,
    setting_names,
)
from registryd.db import gc_queries
from registryd.db.embedded import (
    DATABASE_NAME,
    EmbeddedPostgres,
    EmbeddedSupervisor,
    database_url,
    ensure_database,
)
from registryd.db.migrate import apply_migrations
from registryd.db.pool import create_pool
from registryd.domain import users
from registryd.domain.services import Services
from registryd.errors import RegistryError
from registryd.gc.collector import Collector
from registryd.gc.periodic import log_report, record_run
from registryd.gc.report import Report
from registryd.gc.scrub import ScrubReport, scrub
from registryd.http.tls import new_context
from registryd.ops.config_check import describe
from registryd.ops.health import has_failed, mark_failed
from registryd.ops.logs import configure_logging
from registryd.ops.metrics import multiprocess_metrics
from registryd.server import raise_open_files_limit, serve
from registryd.storage.select import backend_from_settings
from registryd.workers import serve_workers

log = logging.getLogger("registryd")


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per setting not already given a hand-written flag.

    Values stay strings here: config.py parses them exactly like the
    environment and names the flag when one is wrong.
    """
    for name in setting_names():
        with contextlib.suppress(argparse.ArgumentError):  # a hand-written flag wins
            parser.add_argument(
                flag(name), dest=name, metavar="VALUE", help=f"sets {env_var(name)}"
            )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="registryd",
        description="An async container image registry. Every setting is also a "
        "REGISTRYD_* variable, a key of the --config TOML file, and a --flag "
        "(see the README's configuration table).",
    )
    parser.add_argument("--version", action="version", version=f"registryd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, help="TOML file of settings (default: $REGISTRYD_CONFIG)"
    )

    serve_cmd = sub.add_parser("serve", parents=[common], help="run the registry")
    migrate_cmd = sub.add_parser(
        "migrate", parents=[common], help="apply database migrations and exit"
    )
    create_user = sub.add_parser(
        "create-user",
        parents=[common],
        help="create an account (or reset its password); the password is read from stdin",
    )
    create_user.add_argument("username")
    create_user.add_argument("--admin", action="store_true", help="may write anywhere")
    create_user.add_argument("--email")
    gc_cmd = sub.add_parser(
        "gc",
        parents=[common],
        help="collect garbage once (also while the server runs) and print what was removed",
    )
    gc_cmd.add_argument(
        "--dry-run", action="store_true", help="print what would be removed, remove nothing"
    )
    scrub_cmd = sub.add_parser(
        "scrub",
        parents=[common],
        help="re-hash every blob and compare files with rows; exit 1 if anything is wrong",
    )
    scrub_cmd.add_argument(
        "--repair", action="store_true", help="remove corrupt and orphaned files and lost rows"
    )
    config_cmd = sub.add_parser("config", help="inspect the configuration")
    config_sub = config_cmd.add_subparsers(dest="config_command", required=True)
    check_cmd = config_sub.add_parser(
        "check",
        parents=[common],
        help="validate and print the effective configuration, secrets masked",
    )
    for command in (serve_cmd, migrate_cmd, create_user, gc_cmd, scrub_cmd, check_cmd):
        _add_setting_flags(command)
    return parser


def _resolve(args: argparse.Namespace) -> Resolved:
    flags = {name: getattr(args, name, None) for name in setting_names()}
    return resolve(config_file=args.config, flags=flags)


class _Database(contextlib.AbstractContextManager["_Database"]):
    """The configured PostgreSQL, or the embedded one started (and later stopped) here."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedPostgres | None = None
        self.supervisor: EmbeddedSupervisor | None = None
        self.url = settings.database_url or ""

    def __enter__(self) -> _Database:
        if not self.url:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            self.embedded = EmbeddedPostgres(self.settings.embedded_pgdata.resolve())
            server_url = self.embedded.start()
            asyncio.run(ensure_database(server_url, DATABASE_NAME))
            self.url = database_url(server_url, DATABASE_NAME)
        return self

    def supervise(self) -> None:
        """Restart the embedded PostgreSQL if it dies while we serve (see EmbeddedSupervisor)."""
        if self.embedded is not None:
            self.supervisor = EmbeddedSupervisor(
                self.embedded, self.settings.max_restarts_per_minute, _fail
            )
            self.supervisor.start()

    def __exit__(self, *exc: object) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.embedded is not None:
            self.embedded.stop()


def _fail(reason: str) -> None:
    """A permanent failure: /livez turns 503 and the server stops, exiting 1."""
    log.error("%s; stopping (exit code 1)", reason)
    mark_failed()
    os.kill(os.getpid(), signal.SIGTERM)  # the graceful stop, as an operator's would


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
        # Users need no blobs: the storage is never started.
        svc = Services(pool, backend_from_settings(settings), settings, b"")
        created = await users.ensure_user(
            svc, args.username, password, is_admin=args.admin, email=args.email
        )
    finally:
        await pool.close()
    return "created" if created else "updated"


@contextlib.asynccontextmanager
async def _offline_services(settings: Settings) -> AsyncIterator[Services]:
    """Pool and storage for a one-off command, on a migrated database."""
    assert settings.database_url is not None
    await _migrate(settings.database_url)
    pool = await create_pool(settings.database_url, settings)
    # No shared descriptors: a one-off command reads each blob at most once.
    storage = backend_from_settings(settings, open_files=0)
    try:
        await storage.start()
        yield Services(pool, storage, settings, b"")
    finally:
        await storage.close()
        await pool.close()


async def _gc(settings: Settings, dry_run: bool) -> Report:
    async with _offline_services(settings) as svc, svc.pool.acquire() as lock_conn:
        if not await gc_queries.try_collector_lock(lock_conn):
            log.info("another process is collecting garbage; waiting for it to finish")
            await gc_queries.collector_lock(lock_conn)
        try:
            report = await Collector(svc).run(dry_run=dry_run)
        finally:
            await gc_queries.collector_unlock(lock_conn)
        await record_run(svc, report, "command")
    log_report(report)
    return report


async def _scrub(settings: Settings, repair: bool) -> ScrubReport:
    async with _offline_services(settings) as svc:
        return await scrub(svc, repair=repair)


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
    await serve(settings, reuse_port=reuse_port)


def _run_worker(settings: Settings) -> int:
    uvloop.run(_serve(settings, migrate=False, reuse_port=True))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        resolved = _resolve(args)
    except ConfigError as exc:
        print(f"registryd: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(describe(resolved))
        return 0
    settings = resolved.settings
    if args.command == "serve" and settings.tls_cert_file and settings.tls_key_file:
        try:  # a bad pair stops start-up here, named, rather than deep in serve()
            new_context(settings.tls_cert_file, settings.tls_key_file)
        except OSError as exc:  # ssl.SSLError included
            print(f"registryd: configuration error: TLS certificate or key: {exc}", file=sys.stderr)
            return 2
    stop_logging = configure_logging(settings.log_level, settings.log_format, sys.stderr)
    for var in resolved.unknown_env:
        log.warning("ignoring %s: no such setting", var)
    try:
        return _run(args, settings)
    finally:
        stop_logging()


def _run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        with _Database(settings) as db:
            settings = dataclasses.replace(settings, database_url=db.url)
            if args.command == "create-user":
                outcome = asyncio.run(_create_user(settings, args, _read_password()))
                print(f"user {args.username} {outcome}")
                return 0
            if args.command == "gc":
                print(uvloop.run(_gc(settings, args.dry_run)).render())
                return 0
            if args.command == "scrub":
                scrubbed = uvloop.run(_scrub(settings, args.repair))
                print(scrubbed.render())
                return 0 if scrubbed.clean else 1
            if args.command == "migrate":
                applied = asyncio.run(_migrate(db.url))
                print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m}" for m in applied))
                return 0
            with multiprocess_metrics(settings.metrics_dir) as metrics_dir:
                settings = dataclasses.replace(settings, metrics_dir=metrics_dir)
                raise_open_files_limit()  # inherited by the workers
                if settings.workers > 1:
                    applied = asyncio.run(_migrate(db.url))  # once, before any worker serves
                    if applied:
                        log.info("applied migrations: %s", ", ".join(applied))
                    db.supervise()
                    code = serve_workers(settings, _run_worker)
                else:
                    db.supervise()
                    uvloop.run(_serve(settings))
                    code = 0
            return 1 if has_failed() else code
    except RegistryError as exc:
        print(f"registryd: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"registryd: cannot start: {exc}", file=sys.stderr)
        return 1
