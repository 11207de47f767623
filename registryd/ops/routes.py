"""``/livez``, ``/readyz`` and ``/metrics``: unauthenticated, and cheap enough to poll."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from registryd.keys import LIFECYCLE, METRICS, SERVICES, SETTINGS
from registryd.ops.health import check_database, check_storage, has_failed
from registryd.ops.metrics import CONTENT_TYPE

log = logging.getLogger(__name__)


async def get_livez(request: web.Request) -> web.Response:
    """200 whenever the event loop answers: restarting would not help anything else.

    503 once a part this server runs itself failed for good (the embedded
    PostgreSQL could not be restarted): then restarting is what helps.
    """
    if has_failed():
        return web.json_response({"status": "failed"}, status=503)
    return web.json_response({"status": "ok"})


async def get_readyz(request: web.Request) -> web.Response:
    """200 when PostgreSQL answers and storage is writable; 503 otherwise or while draining."""
    lifecycle = request.app[LIFECYCLE]
    if lifecycle.draining:
        return web.json_response({"status": "draining"}, status=503)
    svc = request.app[SERVICES]
    timeout = request.app[SETTINGS].readiness_timeout_seconds
    database, storage = await asyncio.gather(
        check_database(svc.pool, timeout),
        check_storage(svc.storage, timeout, request.app[SETTINGS].min_free_bytes),
    )
    ready = database is None and storage is None
    if ready != lifecycle.ready:
        lifecycle.ready = ready
        if ready:
            log.info("ready")
        else:
            log.warning("not ready", extra={"fields": {"database": database, "storage": storage}})
    body = {
        "status": "ok" if ready else "unavailable",
        "checks": {"database": database or "ok", "storage": storage or "ok"},
    }
    return web.json_response(body, status=200 if ready else 503)


async def get_metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    metrics.sample_pool(request.app[SERVICES].pool)
    body = await asyncio.get_running_loop().run_in_executor(None, metrics.render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/livez", get_livez)
    app.router.add_get("/readyz", get_readyz)
    app.router.add_get("/metrics", get_metrics)
