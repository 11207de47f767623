"""Cache eviction: each upstream's ``cache_max_bytes`` and ``cache_max_age_seconds``.

A cached blob was last used when it, or a cached manifest referring to it, was
last pulled (``pulls``). Above the size cap the least recently used blobs go
first; past the age limit every blob and manifest unused for that long goes.
Evicting a blob removes this upstream's links to it and the cached manifests
that refer to it (with their tags, and indexes referring to those): a later
pull fetches them again. Nothing of a local repository is touched, so a blob
that a local repository also holds stays stored; so does anything pulled within
``IN_USE_GUARD_SECONDS`` or being sent by this process.

Freeing follows the collector's protocol (``gc/collector.py``), not a shortcut:
the rows are locked ``FOR UPDATE SKIP LOCKED`` (a writer holding one wins, and
the unit is tried again next round); the blob row is deleted only when nothing
refers to it any more, by the collector's own rule (``gc_queries``), and its
file is recorded in ``blob_deletions`` and removed while that record is locked,
so a writer reviving the blob meanwhile waits and stores it again. A blob some
writer holds is left to the collector, which the deleted links have queued it for.

One process evicts at a time (an advisory lock); rounds run every
``INTERVAL_SECONDS`` and soon after a download lands in a capped cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from registryd.config import Upstream
from registryd.db import gc_queries, mirror_queries
from registryd.digest import Digest
from registryd.domain.services import Services
from registryd.mirror.metrics import MirrorMetrics
from registryd.mirror.pulls import IN_USE_GUARD_SECONDS, PullLog

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 30.0
# Rounds asked for by downloads start at most this often (a burst of downloads, one round).
_KICK_SPACING_SECONDS = 1.0
# Candidates read per query.
_BATCH = 100
# Eviction never makes a writer wait long: it gives up on the unit instead.
_LOCK_TIMEOUT = "500ms"


@dataclass
class Evicted:
    """What one round evicted from one upstream."""

    blobs: int = 0
    blob_bytes: int = 0
    manifests: int = 0
    files_removed: int = 0
    # Bytes the upstream's repositories hold after the round.
    cache_bytes: int = 0


class Eviction:
    def __init__(self, svc: Services, pulls: PullLog, metrics: MirrorMetrics) -> None:
        self.svc = svc
        self.pulls = pulls
        self.metrics = metrics
        self.upstreams = [
            u
            for u in svc.settings.upstreams
            if u.cache_max_bytes is not None or u.cache_max_age_seconds is not None
        ]
        self.in_use_guard_seconds = IN_USE_GUARD_SECONDS
        self._wake = asyncio.Event()

    def kick(self) -> None:
        """Run a round soon (a download landed)."""
        self._wake.set()

    async def run_periodically(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), INTERVAL_SECONDS)
            self._wake.clear()
            try:
                await self.run_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                log.warning("cache eviction failed; retrying next round", exc_info=True)
            await asyncio.sleep(_KICK_SPACING_SECONDS)

    async def run_once(self) -> dict[str, Evicted] | None:
        """One round over every upstream with a limit; None if another process is evicting."""
        if not self.upstreams:
            return {}
        await self.pulls.flush()
        async with self.svc.pool.acquire() as lock_conn:
            if not await mirror_queries.try_eviction_lock(lock_conn):
                return None
            try:
                results = {u.namespace: await self._evict(u) for u in self.upstreams}
                async with self.svc.pool.acquire() as conn:
                    await mirror_queries.forget_orphan_pulls(conn)
            finally:
                await mirror_queries.eviction_unlock(lock_conn)
        for namespace, done in results.items():
            if done.blobs or done.manifests:
                log.info(
                    "evicted from the mirror cache",
                    extra={
                        "fields": {
                            "upstream": namespace,
                            "blobs": done.blobs,
                            "blob_bytes": done.blob_bytes,
                            "manifests": done.manifests,
                            "files_removed": done.files_removed,
                            "cache_bytes": done.cache_bytes,
                        }
                    },
                )
        return results

    async def _evict(self, upstream: Upstream) -> Evicted:
        done = Evicted()
        ns = upstream.namespace
        async with self.svc.pool.acquire() as conn:
            now: datetime = await conn.fetchval("SELECT now()")
        guard = now - timedelta(seconds=self.in_use_guard_seconds)
        if upstream.cache_max_age_seconds is not None:
            cutoff = min(guard, now - timedelta(seconds=upstream.cache_max_age_seconds))
            await self._evict_blobs(ns, cutoff, None, done, "age")
            await self._evict_manifests(ns, cutoff, done)
        async with self.svc.pool.acquire() as conn:
            done.cache_bytes = await mirror_queries.cache_bytes(conn, ns)
        if upstream.cache_max_bytes is not None and done.cache_bytes > upstream.cache_max_bytes:
            await self._evict_blobs(ns, guard, upstream.cache_max_bytes, done, "size")
            async with self.svc.pool.acquire() as conn:
                done.cache_bytes = await mirror_queries.cache_bytes(conn, ns)
            if done.cache_bytes > upstream.cache_max_bytes:
                log.warning(
                    "the mirror cache stays above cache_max_bytes: the rest is in use",
                    extra={
                        "fields": {
                            "upstream": ns,
                            "cache_bytes": done.cache_bytes,
                            "cache_max_bytes": upstream.cache_max_bytes,
                        }
                    },
                )
        return done

    async def _evict_blobs(
        self, ns: str, before: datetime, cap: int | None, done: Evicted, reason: str
    ) -> None:
        """Evict blobs used before ``before``, least recently used first; with ``cap``,
        only until the cache holds at most that many bytes."""
        total = done.cache_bytes
        if cap is not None:
            async with self.svc.pool.acquire() as conn:
                total = await mirror_queries.cache_bytes(conn, ns)
        skipped: set[Digest] = set()
        while cap is None or total > cap:
            async with self.svc.pool.acquire() as conn:
                candidates = await mirror_queries.least_recently_pulled_blobs(
                    conn, ns, before, _BATCH + len(skipped)
                )
            candidates = [c for c in candidates if c.digest not in skipped]
            if not candidates:
                return
            for blob in candidates:
                if cap is not None and total <= cap:
                    return
                if self.pulls.in_use(blob.digest) or not await self._evict_blob(ns, blob, done):
                    skipped.add(blob.digest)
                    continue
                total -= blob.size_bytes
                done.blobs += 1
                done.blob_bytes += blob.size_bytes
                self.metrics.evicted_blobs.labels(ns, reason).inc()
                self.metrics.evicted_bytes.labels(ns, reason).inc(blob.size_bytes)

    async def _evict_blob(self, ns: str, blob: mirror_queries.CachedBlob, done: Evicted) -> bool:
        """Evict one blob from the upstream's repositories; False if it is busy or was
        pulled since it was chosen."""
        digest = blob.digest
        async with self.svc.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
                    manifests, all_manifests = await mirror_queries.lock_evicted_manifests(
                        conn, ns, digest, None
                    )
                    links, all_links = await mirror_queries.lock_evicted_links(conn, ns, digest)
                    if not (all_manifests and all_links and links):
                        return False
                    used = await mirror_queries.blob_used_at(conn, ns, digest)
                    if used is None or used > blob.used_at:
                        return False
                    done.manifests += await mirror_queries.delete_manifests(conn, manifests)
                    await mirror_queries.delete_links(conn, links, digest)
                    await mirror_queries.forget_pulls(
                        conn, [*manifests, *((r, str(digest)) for r in links)]
                    )
                    # The collector's rule decides whether the blob itself goes now.
                    locked = await gc_queries.lock_blobs(conn, [str(digest)])
                    freed = await gc_queries.delete_dead_blobs(conn, locked, 0.0)
            except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
                return False
        if freed:
            done.files_removed += await self._remove_file(digest)
        return True

    async def _evict_manifests(self, ns: str, before: datetime, done: Evicted) -> None:
        skipped: set[tuple[int, Digest]] = set()
        while True:
            async with self.svc.pool.acquire() as conn:
                candidates = await mirror_queries.manifests_unused_since(
                    conn, ns, before, _BATCH + len(skipped)
                )
            candidates = [c for c in candidates if (c.repository_id, c.digest) not in skipped]
            if not candidates:
                return
            for manifest in candidates:
                if not await self._evict_manifest(ns, manifest, done):
                    skipped.add((manifest.repository_id, manifest.digest))

    async def _evict_manifest(
        self, ns: str, manifest: mirror_queries.CachedManifest, done: Evicted
    ) -> bool:
        async with self.svc.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
                    doomed, all_locked = await mirror_queries.lock_evicted_manifests(
                        conn, ns, manifest.digest, manifest.repository_id
                    )
                    if not all_locked or not doomed:
                        return False
                    used = await mirror_queries.manifest_used_at(
                        conn, manifest.repository_id, manifest.digest
                    )
                    if used is None or used > manifest.used_at:
                        return False
                    # Its blobs stay until they too are unused that long (or the
                    # collector finds their links unreferenced).
                    done.manifests += await mirror_queries.delete_manifests(conn, doomed)
                    await mirror_queries.forget_pulls(conn, doomed)
            except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
                return False
        self.metrics.evicted_manifests.labels(ns).inc(len(doomed))
        return True

    async def _remove_file(self, digest: Digest) -> int:
        """Remove the evicted blob's file as the collector does (1 if removed now)."""
        try:
            async with self.svc.pool.acquire() as conn, conn.transaction():
                if not await mirror_queries.lock_pending_deletion(conn, digest):
                    return 0  # revived, or being removed by the collector
                removed = await self.svc.storage.delete(digest)
                await gc_queries.forget_pending_deletions(conn, [str(digest)])
        except OSError:
            # The pending record stays: the collector removes the file on its next run.
            log.warning("could not remove an evicted blob's file", exc_info=True)
            return 0
        return 1 if removed else 0
