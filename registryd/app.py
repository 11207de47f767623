"""The aiohttp application: routes, middleware and the resources they share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from registryd.auth.secrets import load_token_secret
from registryd.config import Settings
from registryd.db.pool import create_pool
from registryd.domain import users
from registryd.domain.services import Services
from registryd.gc.periodic import collect_in_background
from registryd.http.middleware import add_request_id_header, error_middleware
from registryd.keys import LIFECYCLE, METRICS, SERVICES, SETTINGS
from registryd.ops import routes as ops_routes
from registryd.ops.lifecycle import Lifecycle
from registryd.ops.metrics import Metrics
from registryd.ops.observe import observe_middleware
from registryd.ops.storage import ObservedFilesystemBackend
from registryd.storage.filesystem import FilesystemBackend
from registryd.v1 import errors as v1_errors
from registryd.v1.routes import add_routes as add_v1_routes
from registryd.v2 import errors as v2_errors
from registryd.v2.routes import add_routes as add_v2_routes

log = logging.getLogger(__name__)


# Periodic sweeps never take files younger than this: an upload that is still
# streaming touches its file constantly, even when start-up sweeps take everything.
_MIN_PERIODIC_STALE_SECONDS = 300


async def _sweep_stale_uploads(storage: FilesystemBackend, max_age_seconds: int) -> None:
    """Remove abandoned temp files at start-up, then periodically."""
    while True:
        try:
            removed = await storage.remove_stale_uploads(max_age_seconds)
        except OSError:
            # Keep sweeping later (the directory may come back, e.g. a remounted volume).
            log.exception("sweeping stale upload files failed")
            removed = 0
        if removed:
            log.info("removed %d stale upload file(s)", removed)
        max_age_seconds = max(max_age_seconds, _MIN_PERIODIC_STALE_SECONDS)
        await asyncio.sleep(max_age_seconds)


# Shared blob descriptors of removed files are closed this often (frees their space).
OPEN_FILES_SWEEP_SECONDS = 2.0


async def _sweep_open_files(storage: FilesystemBackend) -> None:
    while True:
        await asyncio.sleep(OPEN_FILES_SWEEP_SECONDS)
        storage.sweep_open_files()


# Pool gauges are sampled this often in every process (and at each scrape).
POOL_SAMPLE_SECONDS = 5


async def _sample_pool(app: web.Application) -> None:
    while True:
        app[METRICS].sample_pool(app[SERVICES].pool)
        await asyncio.sleep(POOL_SAMPLE_SECONDS)


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_url is not None, "resolve the database before create_app"
    storage = ObservedFilesystemBackend(settings.storage_root, app[METRICS], settings.open_files)
    await storage.start()
    token_secret = await asyncio.to_thread(load_token_secret, settings)
    pool = await create_pool(settings.database_url, settings)
    svc = Services(pool=pool, storage=storage, settings=settings, token_secret=token_secret)
    app[SERVICES] = svc
    if settings.auth_mode == "none":
        log.warning(
            "REGISTRYD_AUTH_MODE=none: ANYONE who can reach this server may push, pull "
            "and delete anything. Use it only for private CI caches and load tests."
        )
    if settings.admin_user is not None and settings.admin_password is not None:
        await users.ensure_user(svc, settings.admin_user, settings.admin_password, is_admin=True)
        log.info("admin account %r is ready", settings.admin_user)
    sweeper = asyncio.create_task(_sweep_stale_uploads(storage, settings.stale_upload_seconds))
    sampler = asyncio.create_task(_sample_pool(app))
    open_files = asyncio.create_task(_sweep_open_files(storage))
    try:
        yield
    finally:
        for task in (sweeper, sampler, open_files):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await pool.close()
        storage.close()


def create_app(settings: Settings) -> web.Application:
    """Build the application; ``settings.database_url`` must point at a migrated database."""
    app = web.Application(
        middlewares=[
            observe_middleware,
            error_middleware(
                [("/v1/", v1_errors.render), ("/v2", v2_errors.render)],
                v1_errors.render,
            ),
        ],
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics(settings.metrics_dir)
    app[LIFECYCLE] = Lifecycle()
    app.on_response_prepare.append(add_request_id_header)
    app.cleanup_ctx.append(_services)
    app.cleanup_ctx.append(collect_in_background)
    ops_routes.add_routes(app)
    add_v1_routes(app)
    add_v2_routes(app)
    return app
