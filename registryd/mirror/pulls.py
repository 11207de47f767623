"""When mirrored content was last pulled, recorded cheaply: the eviction's LRU clock.

A pull is noted in memory (a dict update, no I/O) and written to ``mirror_pulls``
in one statement per ``FLUSH_SECONDS`` at most, so a busy mirror costs one small
upsert a second per process instead of a write per blob GET. Blobs being sent
right now are "in use": each flush stamps them again, so a transfer that runs
for minutes in any process keeps looking freshly pulled, and the eviction
leaves everything pulled within ``IN_USE_GUARD_SECONDS`` alone (a few flushes'
worth: what another process has not written yet is that recent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator

import asyncpg

from registryd.db import mirror_queries
from registryd.digest import Digest
from registryd.names import RepositoryName

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
# Nothing pulled this recently is evicted (pulls reach the database up to a flush late).
IN_USE_GUARD_SECONDS = 5 * FLUSH_SECONDS

_Key = tuple[str, str, str]  # namespace, repository, digest


class PullLog:
    """This process's pulls not yet written, and the blobs it is sending now."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._pending: dict[_Key, float] = {}
        self._sending: Counter[_Key] = Counter()
        self._flush_lock = asyncio.Lock()

    def record(self, name: RepositoryName, digest: Digest) -> None:
        """Note a pull of ``digest`` from the mirrored repository ``name`` (no I/O)."""
        self._pending[(name.namespace, name.repository, str(digest))] = time.time()

    @contextlib.contextmanager
    def sending(self, name: RepositoryName, digest: Digest) -> Iterator[None]:
        """While the body of ``digest`` is sent: a pull that lasts."""
        key = (name.namespace, name.repository, str(digest))
        self._pending[key] = time.time()
        self._sending[key] += 1
        try:
            yield
        finally:
            self._sending[key] -= 1
            if not self._sending[key]:
                del self._sending[key]
            self._pending[key] = time.time()

    def in_use(self, digest: Digest) -> bool:
        """Whether this process is sending ``digest`` now."""
        text = str(digest)
        return any(key[2] == text for key in self._sending)

    async def flush(self) -> None:
        """Write the pulls noted so far; kept for the next flush if the database fails."""
        async with self._flush_lock:
            now = time.time()
            for key in self._sending:
                self._pending[key] = now
            if not self._pending:
                return
            batch, self._pending = self._pending, {}
            rows = sorted((*key, at) for key, at in batch.items())
            try:
                async with self._pool.acquire() as conn:
                    await mirror_queries.record_pulls(conn, rows)
            except BaseException:
                for key, at in batch.items():  # newer notes win
                    self._pending[key] = max(at, self._pending.get(key, 0.0))
                raise

    async def flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                log.warning("could not record mirrored pulls; retrying", exc_info=True)
