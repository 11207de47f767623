"""Count the PostgreSQL round trips one request makes, on a real server and database.

Every statement asyncpg sends goes through ``Connection._execute`` (fetch,
fetchrow, fetchval, execute with arguments) or ``Connection.execute`` without
arguments (BEGIN, COMMIT, and the reset a pool connection gets on release).
Both are wrapped for the test; a statement counts when it runs in the context
of a request made inside ``RoundTrips.during()`` (an outer middleware marks the
request's context, so background tasks such as the sweeper or the collector
are not counted). Prepares are not counted: the tests warm the statement cache
first, as a running server has.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import asyncpg
import pytest
from aiohttp import web

_RECORDING: ContextVar[list[str] | None] = ContextVar("round_trips", default=None)


class RoundTrips:
    """The statements of the requests made during ``during()``, in order."""

    def __init__(self) -> None:
        self._recording: list[str] | None = None

    @contextlib.asynccontextmanager
    async def during(self) -> AsyncIterator[list[str]]:
        statements: list[str] = []
        self._recording = statements
        try:
            yield statements
        finally:
            self._recording = None

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        token = _RECORDING.set(self._recording)
        try:
            return await handler(request)
        finally:
            _RECORDING.reset(token)

    def install(self, app: web.Application, monkeypatch: pytest.MonkeyPatch) -> None:
        """Count the statements of ``app``'s requests (call before the app starts)."""
        app.middlewares.insert(0, self.middleware)
        execute = asyncpg.connection.Connection.execute
        execute_with_args = getattr(asyncpg.connection.Connection, "_execute")  # noqa: B009 - private

        async def counted_execute(conn: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            if not args:  # with arguments it goes through _execute, counted there
                _record(query)
            return await execute(conn, query, *args, **kwargs)

        async def counted_execute_with_args(
            conn: Any, query: str, *args: Any, **kwargs: Any
        ) -> Any:
            _record(query)
            return await execute_with_args(conn, query, *args, **kwargs)

        monkeypatch.setattr(asyncpg.connection.Connection, "execute", counted_execute)
        monkeypatch.setattr(asyncpg.connection.Connection, "_execute", counted_execute_with_args)


def _record(query: str) -> None:
    statements = _RECORDING.get()
    if statements is not None:
        statements.append(" ".join(query.split())[:80])
