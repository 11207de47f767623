"""The asyncpg connection pool, with every wait bounded and outages turned into 503s.

Without bounds a hung PostgreSQL (stopped, partitioned) holds each request for
minutes: acquiring waits for a connection that never finishes its handshake, a
statement waits for an answer, and releasing a connection resets it with yet
another statement. Here acquiring (connecting included) and releasing are
bounded by ``db_acquire_timeout_seconds`` and statements by
``db_statement_timeout_seconds``; a connection that cannot be had becomes
``DatabaseUnavailable``, which every protocol answers 503 with ``Retry-After``.

An outage is logged once when it starts and once when it ends, not once per
failed reconnect (asyncpg logs a traceback for each of those).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import asyncpg
import asyncpg.exceptions

from registryd.config import Settings
from registryd.errors import DatabaseUnavailable

log = logging.getLogger("registryd.db")

# Errors that mean "the database is not there (in time)", not "the query is wrong".
# (OSError covers refused and missing sockets while connecting; TimeoutError is one.)
OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.QueryCanceledError,  # statement_timeout
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    # What a connection whose server vanished mid-protocol can raise on its next use.
    asyncpg.InternalClientError,
)


class Outage:
    """Whether PostgreSQL is currently failing us; logs each transition once."""

    def __init__(self) -> None:
        self.since: float | None = None

    def failed(self, exc: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.warning(
                "PostgreSQL unavailable (%s: %s); answering 503 until it is back",
                type(exc).__name__,
                str(exc) or "no answer in time",
            )

    def recovered(self) -> None:
        if self.since is not None:
            seconds = time.monotonic() - self.since
            self.since = None
            log.warning(
                "PostgreSQL is back after %.1fs",
                seconds,
                extra={"fields": {"outage_seconds": round(seconds, 3)}},
            )


# One database per process: one outage state, shared with the log filter below.
OUTAGE = Outage()


class _ReconnectLogFilter(logging.Filter):
    """Folds asyncpg's per-attempt reconnect tracebacks into OUTAGE's single line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Failed to restore the pool connection"):
            exc = record.exc_info[1] if record.exc_info else None
            OUTAGE.failed(exc if exc is not None else ConnectionError("reconnect failed"))
            return False
        return True


_RECONNECT_FILTER = _ReconnectLogFilter()


class BoundedPool(asyncpg.Pool):
    """``asyncpg.Pool`` whose acquire and release default to a timeout (see module doc)."""

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        # The timeout given here also bounds the release (asyncpg keeps it per connection).
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)

    async def _acquire(self, timeout: float | None) -> Any:  # noqa: ASYNC109 - asyncpg's signature
        try:
            return await super()._acquire(timeout)  # type: ignore[misc]
        except OUTAGE_ERRORS as exc:
            if self.is_closing():
                raise
            OUTAGE.failed(exc)
            raise DatabaseUnavailable() from exc

    async def release(
        self,
        connection: Any,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - asyncpg's signature
    ) -> None:
        holder = connection._holder  # asyncpg's slot; its connection survives a clean reset
        await super().release(connection, timeout=timeout)
        if holder._con is not None and not holder._con.is_closed():
            OUTAGE.recovered()


async def create_pool(database_url: str, settings: Settings) -> asyncpg.Pool:
    """Open the pool; raise asyncpg/OSError errors if the server is unreachable."""
    logging.getLogger("asyncpg.pool").addFilter(_RECONNECT_FILTER)
    pool = BoundedPool(
        database_url,
        acquire_timeout=settings.db_acquire_timeout_seconds,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        # Behind a transaction-mode PgBouncer prepared statements cannot be cached.
        statement_cache_size=settings.db_statement_cache_size,
        # Client-side, so it also bounds a server that stopped answering altogether.
        command_timeout=settings.db_statement_timeout_seconds,
        # The TCP/socket connect and startup handshake of each new connection.
        timeout=settings.db_acquire_timeout_seconds,
    )
    await pool
    return pool
