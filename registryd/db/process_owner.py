"""This process's identity in PostgreSQL: an advisory lock that dies with the process.

Upload claims and temp files carry the key of the process that made them. The
process holds a session-level advisory lock on its key on a connection of its
own, so any replica sharing the database sees at once whether the owner of a
claim is alive: when a process dies (even by ``kill -9``) the kernel closes its
socket, PostgreSQL ends the backend and the lock is gone with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable

import asyncpg

log = logging.getLogger(__name__)

# The first key of the two-key advisory lock form ("regd"); the second is the process key.
NAMESPACE = 0x72656764
# How often the lock connection is checked (and re-opened after a database restart).
WATCH_SECONDS = 2.0

# SQL: whether the process with key ``<column>`` holds its lock (is alive).
OWNER_ALIVE_SQL = """EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND classid = {namespace}::oid AND objid = ({column})::oid
      AND objsubid = 2 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
)"""


def owner_alive_sql(column: str) -> str:
    return OWNER_ALIVE_SQL.format(namespace=NAMESPACE, column=column)


def _new_key() -> int:
    return secrets.randbelow(2**31 - 2) + 1


class ProcessOwner:
    """The key this process claims with; ``start`` takes the lock, ``close`` drops it."""

    def __init__(self, on_key: Callable[[int], None] | None = None) -> None:
        self.key = _new_key()
        # Told the key whenever it is chosen (the storage names temp files with it).
        self._on_key = on_key
        self._conn: asyncpg.Connection | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def _lock(self, database_url: str) -> None:
        conn = await asyncpg.connect(
            database_url, server_settings={"application_name": "registryd process owner"}
        )
        try:
            # Keys are random; a live process holding the same one makes us pick another.
            while not await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, $2)", NAMESPACE, self.key
            ):
                self.key = _new_key()
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        if self._on_key is not None:
            self._on_key(self.key)

    async def start(self, database_url: str) -> None:
        await self._lock(database_url)
        self._watcher = asyncio.create_task(self._watch(database_url))

    async def _watch(self, database_url: str) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            if self._conn is not None and not self._conn.is_closed():
                continue
            # Lost (database restart, network): meanwhile our claims looked abandoned and
            # may have been taken over. The old key stays dead, so none of them can come
            # back to life; the requests holding them find out when they release.
            if self._conn is not None:
                log.warning("process owner lock lost; upload claims of this process may be taken")
                self._conn = None
                self.key = _new_key()
            try:
                await self._lock(database_url)
                log.warning("process owner lock re-taken with key %d", self.key)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.debug("process owner lock not re-taken yet: %s", exc)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
