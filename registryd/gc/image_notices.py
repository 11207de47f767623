"""Every process forgets a collected v1 image at once, not at its next restart.

Each process keeps complete v1 images in ``svc.images`` (domain/image_cache.py) so
that a layer or JSON GET needs no database round-trip. When a collection deletes
one (or ``scrub --repair`` sends one back to "uploading"), a trigger (migration
0012) ``NOTIFY``s ``CHANNEL`` with its id on commit, and this listener, one
connection per process, forgets it: every worker of every replica answers 404
within the notification's latency (milliseconds).

Correctness first, as for the access facts (access/facts.py): while the listening
connection is not up (start-up, a lost or silently dead connection, a database
restart, ``access_cache = false`` where no ``LISTEN`` is possible) the cache is
disabled, so a missed notification can never keep a collected image; it is
enabled again, empty, once ``LISTEN`` succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from registryd.domain.image_cache import ImageCache
from registryd.names import ImageId

log = logging.getLogger(__name__)

CHANNEL = "registryd_v1_images"
# How long to wait before listening again after the connection was lost.
RECONNECT_SECONDS = 1.0
# A connection that died without closing (a network partition) delivers nothing and
# says nothing: a query this often proves it is alive, within PING_TIMEOUT_SECONDS.
PING_SECONDS = 10.0
PING_TIMEOUT_SECONDS = 5.0


def cache_gauge(registry: CollectorRegistry) -> Gauge:
    return Gauge(
        "registryd_v1_image_cache_enabled",
        "Processes whose cache of complete v1 images is on (it is off while a process "
        "cannot listen for collected images).",
        registry=registry,
        multiprocess_mode="livesum",
    )


def _forget(cache: ImageCache, payload: str) -> None:
    if payload:
        cache.forget(ImageId(payload))
    else:  # TRUNCATE: nothing names the images
        cache.clear()


async def _listen_until_lost(cache: ImageCache, database_url: str, gauge: Gauge | None) -> None:
    """Listen and keep the cache enabled until the connection is lost (then return)."""
    lost = asyncio.Event()
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, lambda _c, _pid, _ch, payload: _forget(cache, payload))
        cache.enable()
        if gauge is not None:
            gauge.set(1)
        log.info("v1 image cache on: listening for collected images")
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), PING_SECONDS)
            if not lost.is_set():
                await conn.fetchval("SELECT 1", timeout=PING_TIMEOUT_SECONDS)
        log.warning("v1 image cache off: lost the notification connection")
    finally:
        cache.disable()
        if gauge is not None:
            gauge.set(0)
        if not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)


async def follow_collected_images(
    cache: ImageCache, database_url: str | None, gauge: Gauge | None = None
) -> None:
    """Until cancelled: keep ``cache`` in step with deletions of complete v1 images, or
    disabled while that is not possible. ``database_url`` None: never possible.
    ``gauge`` (see ``cache_gauge``) is 1 while the cache is on."""
    cache.disable()
    if database_url is None:
        return
    try:
        while True:
            try:
                await _listen_until_lost(cache, database_url, gauge)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("v1 image cache off: cannot listen for collected images (%s)", exc)
            await asyncio.sleep(RECONNECT_SECONDS)
    finally:
        cache.disable()
