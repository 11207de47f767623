"""The pull-through cache of one process: upstream clients, fetches in flight, counters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
from aiohttp import web

from registryd.config import Upstream
from registryd.domain.services import Services
from registryd.keys import METRICS, SERVICES
from registryd.mirror.eviction import Eviction
from registryd.mirror.metrics import MirrorMetrics
from registryd.mirror.pulls import PullLog
from registryd.mirror.upstream import UpstreamClient

if TYPE_CHECKING:
    from registryd.digest import Digest
    from registryd.mirror.blobs import Download

log = logging.getLogger(__name__)

T = TypeVar("T")


class Mirror:
    def __init__(self, svc: Services, metrics: MirrorMetrics) -> None:
        self.svc = svc
        self.metrics = metrics
        self.upstreams = {u.namespace: u for u in svc.settings.upstreams}
        self.unprefixed = next((u for u in svc.settings.upstreams if u.serve_unprefixed), None)
        self._clients = {u.namespace: UpstreamClient(u) for u in svc.settings.upstreams}
        self._flights: dict[Hashable, asyncio.Task[Any]] = {}
        # Blob downloads in flight in this process, by digest: later requests follow them.
        self.downloads: dict[Digest, Download] = {}
        # Downloads run as tasks of their own (a client leaving must not end them).
        self.tasks: set[asyncio.Task[None]] = set()
        self.pulls = PullLog(svc.pool)
        self.eviction = Eviction(svc, self.pulls, metrics)

    def client(self, upstream: Upstream) -> UpstreamClient:
        return self._clients[upstream.namespace]

    async def single_flight(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> T:
        """``fetch()``, shared by every caller asking for ``key`` while it runs.

        Shielded: a caller that goes away does not cancel the others' fetch.
        """
        task = self._flights.get(key)
        if task is None:

            async def run() -> T:
                return await fetch()

            task = asyncio.create_task(run())
            self._flights[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        result: T = await asyncio.shield(task)
        return result

    def _finished(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        self._flights.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have left

    async def close(self) -> None:
        for task in list(self.tasks) + list(self._flights.values()):
            task.cancel()
        for task in list(self.tasks) + list(self._flights.values()):
            with contextlib.suppress(BaseException):
                await task
        for client in self._clients.values():
            await client.close()


MIRROR = web.AppKey("mirror", Mirror)


async def mirror_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the mirror exists while the services do, when upstreams are set."""
    svc = app[SERVICES]
    if not svc.settings.upstreams:
        yield
        return
    mirror = Mirror(svc, MirrorMetrics(app[METRICS]))
    app[MIRROR] = mirror
    for upstream in svc.settings.upstreams:
        log.info(
            "mirroring an upstream registry",
            extra={"fields": {"namespace": upstream.namespace, "url": upstream.url}},
        )
    background = [asyncio.create_task(mirror.pulls.flush_periodically())]
    if mirror.eviction.upstreams:
        background.append(asyncio.create_task(mirror.eviction.run_periodically()))
    try:
        yield
    finally:
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await mirror.close()
        try:
            await mirror.pulls.flush()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            # Shutting down: a lost last second of pulls only makes that content look older.
            log.warning("could not record the last mirrored pulls", exc_info=True)
