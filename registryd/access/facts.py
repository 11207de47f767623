"""The facts access decisions need, cached per process and invalidated across processes.

With token auth every request asks who may read or write a repository, a v1
image read asks which repositories declare or tag the image, and a v2 blob read
whether the repository holds the blob. Those facts change rarely (a repository
made private or deleted, a tag or declaration changed, a blob link deleted), so
each process keeps them, and PostgreSQL tells every process of every replica
when one changes: triggers (migrations 0009, 0011) ``NOTIFY`` on ``CHANNEL``,
and a dedicated listening connection empties the cache on any notification.

Blob links are kept only when they exist: a new link needs no notification
(nothing cached says it is missing), so pushes do not empty the cache.

Manifests read by digest or tag (the bytes too, up to ``MAX_CACHED_MANIFEST_BYTES``
each and ``MAX_MANIFEST_CACHE_BYTES`` in all) are kept the same way on a channel
of their own, ``MANIFEST_CHANNEL``: a tag push empties them, not the access facts.

Correctness first:

- While the listening connection is not up (start-up, a lost connection, a
  database restart) the cache is empty and bypassed: every lookup goes to
  PostgreSQL, so a missed notification can never leave a stale grant. It is
  re-armed only once LISTEN succeeds again.
- A lookup that began before an invalidation never stores its (possibly old)
  answer: entries are stored only if the generation is unchanged.
- Entries also expire after ``MAX_AGE_SECONDS`` as a backstop.

NOTIFY is delivered on commit, so every process, the writer's included, stops
using the old fact within the notification's latency (milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from registryd.db import blob_queries, manifest_queries, repository_queries
from registryd.db.conn import Conn
from registryd.db.manifest_queries import ManifestRow
from registryd.db.repository_queries import RepositoryRow
from registryd.digest import Digest
from registryd.lru import Lru
from registryd.names import RepositoryName

log = logging.getLogger(__name__)

CHANNEL = "registryd_access"
MANIFEST_CHANNEL = "registryd_manifests"
MAX_CACHED_MANIFEST_BYTES = 64 * 1024
MAX_MANIFEST_CACHE_BYTES = 32 * 1024**2
MAX_AGE_SECONDS = 30.0
MAX_ENTRIES = 50_000
# How long to wait before listening again after the connection was lost.
RECONNECT_SECONDS = 1.0

T = TypeVar("T")
Referencing = list[tuple[RepositoryRow, bool]]


class AccessFacts:
    """Repository rows by name and v1 image references by id, through the cache when armed."""

    def __init__(self, pool: asyncpg.Pool, database_url: str | None, enabled: bool = True) -> None:
        self._pool = pool
        self._database_url = database_url
        self._enabled = enabled and database_url is not None
        self._entries: Lru[tuple[str, str], tuple[float, Any]] = Lru(MAX_ENTRIES)
        self._generation = 0
        self._manifests: Lru[str, tuple[float, ManifestRow]] = Lru(
            MAX_ENTRIES,
            weight=lambda entry: len(entry[1].body),
            max_weight=MAX_MANIFEST_CACHE_BYTES,
        )
        self._manifest_generation = 0
        self._armed = False
        self._listener: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self.hits = 0
        self.misses = 0

    @property
    def armed(self) -> bool:
        """Whether answers may come from the cache (the listener is up)."""
        return self._armed

    def invalidate(self) -> None:
        """Forget everything (a write of this process, a lost listener)."""
        self._generation += 1
        self._entries.clear()
        self._forget_manifests()

    def _forget_access_facts(self) -> None:
        self._generation += 1
        self._entries.clear()

    def _forget_manifests(self) -> None:
        self._manifest_generation += 1
        self._manifests.clear()

    async def manifest(self, repository_id: int, reference: Digest | str) -> ManifestRow | None:
        """The repository's manifest by digest or tag, or None."""
        key = f"{repository_id}/{reference}"
        now = time.monotonic()
        if self._armed:
            entry = self._manifests.get(key)
            if entry is not None and now - entry[0] < MAX_AGE_SECONDS:
                self.hits += 1
                return entry[1]
        self.misses += 1
        generation = self._manifest_generation
        async with self._pool.acquire() as conn:
            if isinstance(reference, Digest):
                row = await manifest_queries.fetch_manifest(conn, repository_id, reference)
            else:
                row = await manifest_queries.fetch_tagged_manifest(conn, repository_id, reference)
        if (
            self._armed
            and generation == self._manifest_generation
            and row is not None
            and len(row.body) <= MAX_CACHED_MANIFEST_BYTES
        ):
            self._manifests.put(key, (now, row))
        return row

    async def repository(self, name: RepositoryName) -> RepositoryRow | None:
        """The repository's row, or None if it does not exist."""

        async def fetch(conn: Conn) -> RepositoryRow | None:
            return await repository_queries.fetch_repository(conn, name)

        return await self._lookup(("repository", str(name)), fetch)

    async def image_references(self, image_id: str) -> Referencing:
        """Repositories that declare or tag the v1 image, each with whether it declared it."""

        async def fetch(conn: Conn) -> Referencing:
            return await repository_queries.fetch_repositories_referencing(conn, image_id)

        return await self._lookup(("image", image_id), fetch)

    async def blob_size(self, repository_id: int, digest: Digest) -> int | None:
        """The size of a blob the repository holds, or None if it holds none by that digest."""

        async def fetch(conn: Conn) -> int | None:
            return await blob_queries.fetch_repository_blob_size(conn, repository_id, digest)

        # Keyed by id: a repository deleted and made again under its name gets a new one.
        return await self._lookup(("blob", f"{repository_id}/{digest}"), fetch, keep_none=False)

    async def _lookup(
        self,
        key: tuple[str, str],
        fetch: Callable[[Conn], Awaitable[T]],
        keep_none: bool = True,
    ) -> T:
        now = time.monotonic()
        if self._armed:
            entry = self._entries.peek(key)
            if entry is not None and now - entry[0] < MAX_AGE_SECONDS:
                self.hits += 1
                value: T = entry[1]
                return value
        self.misses += 1
        generation = self._generation
        async with self._pool.acquire() as conn:
            fetched = await fetch(conn)
        if self._armed and generation == self._generation and (keep_none or fetched is not None):
            self._entries.put(key, (now, fetched))
        return fetched

    async def run(self) -> None:
        """Keep the listening connection up until cancelled; arm the cache while it is."""
        if not self._enabled:
            return
        assert self._database_url is not None
        try:
            while True:
                try:
                    await self._listen(self._database_url)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("access cache off: cannot listen for changes (%s)", exc)
                else:
                    await self._lost.wait()
                    log.warning("access cache off: lost the notification connection")
                self._disarm()
                await asyncio.sleep(RECONNECT_SECONDS)
        finally:
            self._disarm()
            if self._listener is not None and not self._listener.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._listener.close(), 2)

    async def _listen(self, database_url: str) -> None:
        self._lost.clear()
        listener = await asyncpg.connect(database_url, timeout=10)
        self._listener = listener
        listener.add_termination_listener(lambda _conn: self._lost.set())
        await listener.add_listener(CHANNEL, self._notified)
        await listener.add_listener(MANIFEST_CHANNEL, self._manifests_notified)
        # Whatever happened while nobody listened is unknown: start from nothing.
        self.invalidate()
        self._armed = True
        log.info("access cache on: listening for changes")

    def _notified(self, *_: object) -> None:
        self._forget_access_facts()

    def _manifests_notified(self, *_: object) -> None:
        self._forget_manifests()

    def _disarm(self) -> None:
        self._armed = False
        self.invalidate()
