"""Collection inside the server: every ``gc_interval_seconds``, one collector at a time.

Every worker of every replica wakes up on its own timer; a PostgreSQL advisory
lock lets exactly one of them collect, and the others skip that round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from registryd.db import gc_queries
from registryd.domain.services import Services
from registryd.gc.collector import Collector
from registryd.gc.image_notices import cache_gauge, follow_collected_images
from registryd.gc.report import Report
from registryd.keys import METRICS, SERVICES

log = logging.getLogger("registryd.gc")

_DURATION_BUCKETS_SECONDS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class GcMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "registryd_gc_runs",
            "Garbage collection runs, by outcome (finished, partial: stopped at "
            "gc_max_seconds, failed).",
            ["outcome"],
            registry=registry,
        )
        self.blobs_deleted = Counter(
            "registryd_gc_blobs_deleted", "Blobs deleted by garbage collection.", registry=registry
        )
        self.bytes_deleted = Counter(
            "registryd_gc_bytes_deleted",
            "Bytes of blob files removed by garbage collection.",
            registry=registry,
        )
        self.manifests_deleted = Counter(
            "registryd_gc_manifests_deleted",
            "Manifests deleted by garbage collection and retention.",
            registry=registry,
        )
        self.duration = Histogram(
            "registryd_gc_duration_seconds",
            "Duration of garbage collection runs.",
            buckets=_DURATION_BUCKETS_SECONDS,
            registry=registry,
        )

    def observe(self, report: Report) -> None:
        self.runs.labels("finished" if report.finished else "partial").inc()
        self.blobs_deleted.inc(len(report.blobs))
        self.bytes_deleted.inc(report.bytes_freed)
        self.manifests_deleted.inc(len(report.manifests))
        self.duration.observe(report.seconds)


def log_report(report: Report) -> None:
    """The one log line of a run, with its counts as fields."""
    counts = report.counts()
    log.info(
        "garbage collection %s: %d manifest(s), %d v1 image(s), %d blob(s), %d bytes freed, "
        "%d upload session(s) in %.2fs",
        "dry run" if report.dry_run else ("finished" if report.finished else "stopped early"),
        counts["manifests"],
        counts["v1_images"],
        counts["blobs"],
        counts["bytes_freed"],
        counts["uploads"],
        report.seconds,
        extra={"fields": {f"gc_{k}": v for k, v in counts.items()}},
    )


async def record_run(svc: Services, report: Report, trigger: str) -> None:
    """Keep the run's counts for the admin pages; a failure to record is only logged."""
    try:
        async with svc.pool.acquire() as conn:
            await gc_queries.insert_run(
                conn, trigger, report.dry_run, report.finished, report.counts()
            )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        log.warning("could not record the garbage collection run", exc_info=True)


async def collect_if_free(svc: Services, metrics: GcMetrics | None = None) -> Report | None:
    """Run one collection unless another process is collecting (then None)."""
    async with svc.pool.acquire() as lock_conn:
        if not await gc_queries.try_collector_lock(lock_conn):
            log.debug("another process is collecting garbage; skipping this round")
            return None
        try:
            try:
                report = await Collector(svc).run()
            except Exception:
                if metrics is not None:
                    metrics.runs.labels("failed").inc()
                raise
        finally:
            if svc.access is not None:  # this process serves nothing it deleted, even for a ms
                svc.access.invalidate()
            await gc_queries.collector_unlock(lock_conn)
    log_report(report)
    await record_run(svc, report, "server")
    if metrics is not None:
        metrics.observe(report)
    return report


async def collect_periodically(svc: Services, metrics: GcMetrics) -> None:
    """Forever: wait ``gc_interval_seconds``, then collect if nobody else is."""
    interval = svc.settings.gc_interval_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            await collect_if_free(svc, metrics)
        except Exception:
            # A database or storage hiccup must not end collection for the process's lifetime.
            log.exception("garbage collection failed; retrying in %ds", interval)


async def collect_in_background(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: the periodic collector of this process (if enabled), and
    the listener that makes it forget v1 images any process collected."""
    svc = app[SERVICES]
    settings = svc.settings
    # access_cache = false means no LISTEN is possible (transaction-mode PgBouncer): then
    # the v1 image cache stays off, as nothing would tell it of a collected image.
    listen_url = settings.database_url if settings.access_cache else None
    svc.images.disable()  # before the first request, until the listener is up
    gauge = cache_gauge(app[METRICS].registry)
    tasks = [asyncio.create_task(follow_collected_images(svc.images, listen_url, gauge))]
    if settings.gc_interval_seconds > 0:
        metrics = GcMetrics(app[METRICS].registry)
        tasks.append(asyncio.create_task(collect_periodically(svc, metrics)))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
