"""The aiohttp application: routes, middleware and the resources they share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from registryd.access.facts import AccessFacts
from registryd.auth.secrets import load_token_secret
from registryd.auth.throttle import LOGIN_THROTTLE, LoginThrottle
from registryd.config import Settings
from registryd.db.pool import create_pool
from registryd.db.process_owner import ProcessOwner
from registryd.domain import commits, passwords, uploads, users
from registryd.domain.services import Services
from registryd.gc.periodic import collect_in_background
from registryd.http.middleware import add_request_id_header
from registryd.keys import LIFECYCLE, METRICS, SERVICES, SETTINGS
from registryd.mirror.middleware import mirror_middleware
from registryd.mirror.service import mirror_context
from registryd.ops import routes as ops_routes
from registryd.ops.lifecycle import Lifecycle
from registryd.ops.metrics import Metrics
from registryd.ops.observe import observe_middleware
from registryd.storage.base import Backend
from registryd.storage.observed import ObservedBackend
from registryd.storage.select import backend_from_settings
from registryd.ui.app import mount as mount_ui
from registryd.v1 import errors as v1_errors
from registryd.v1 import routes as v1_routes
from registryd.v1.ping import get_ping
from registryd.v2 import routes as v2_routes

log = logging.getLogger(__name__)


# Periodic sweeps never take files younger than this: an upload that is still
# streaming touches its file constantly, even when start-up sweeps take everything.
_MIN_PERIODIC_STALE_SECONDS = 300


# Later sweeps spare files touched this recently: a process whose database connection
# blipped got a new key, and may still be finishing a file named with the old one.
_PERIODIC_SWEEP_GRACE_SECONDS = 60


async def _sweep_temp_files(svc: Services, max_age_seconds: int, grace_seconds: float) -> None:
    try:
        removed = await uploads.sweep_temp_files(svc, max_age_seconds, grace_seconds)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        # Keep sweeping later (the directory may come back, e.g. a remounted volume).
        log.exception("sweeping stale upload files failed")
        removed = 0
    if removed:
        log.info("removed %d stale upload file(s)", removed)


async def _sweep_stale_uploads(svc: Services, max_age_seconds: int) -> None:
    """Remove abandoned temp files periodically (the first sweep runs before serving)."""
    max_age_seconds = max(max_age_seconds, _MIN_PERIODIC_STALE_SECONDS)
    while True:
        await asyncio.sleep(max_age_seconds)
        await _sweep_temp_files(svc, max_age_seconds, _PERIODIC_SWEEP_GRACE_SECONDS)


# Shared blob descriptors of removed files are closed this often (frees their space).
OPEN_FILES_SWEEP_SECONDS = 2.0


async def _sweep_open_files(storage: Backend) -> None:
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
    storage: Backend = ObservedBackend(backend_from_settings(settings), app[METRICS])
    await storage.start()
    try:
        token_secret = await asyncio.to_thread(load_token_secret, settings)
        pool = await create_pool(settings.database_url, settings)
    except BaseException:
        await storage.close()
        raise

    # Claims and temp files carry this process's key; its lock tells others we live.
    def name_temp_files_with(key: int) -> None:
        storage.owner = key

    owner = ProcessOwner(on_key=name_temp_files_with)
    try:
        await owner.start(settings.database_url)
    except BaseException:
        await pool.close()
        await storage.close()
        raise
    access = AccessFacts(pool, settings.database_url, enabled=settings.access_cache)
    svc = Services(
        pool=pool, storage=storage, settings=settings, token_secret=token_secret, access=access
    )
    app[SERVICES] = svc
    if settings.auth_mode == "none":
        log.warning(
            "REGISTRYD_AUTH_MODE=none: ANYONE who can reach this server may push, pull "
            "and delete anything. Use it only for private CI caches and load tests."
        )
    if settings.admin_user is not None and settings.admin_password is not None:
        await users.ensure_user(svc, settings.admin_user, settings.admin_password, is_admin=True)
        log.info("admin account %r is ready", settings.admin_user)
    # Files of a crash are gone before the first request, whatever their age.
    await _sweep_temp_files(svc, settings.stale_upload_seconds, 0)
    sweeper = asyncio.create_task(_sweep_stale_uploads(svc, settings.stale_upload_seconds))
    sampler = asyncio.create_task(_sample_pool(app))
    open_files = asyncio.create_task(_sweep_open_files(storage))
    access_listener = asyncio.create_task(access.run())
    try:
        yield
    finally:
        for task in (sweeper, sampler, open_files, access_listener):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Blob commits of cancelled requests finish before the pool they write with closes.
        await commits.wait_for_commits(svc, settings.drain_timeout_seconds)
        await owner.close()
        await pool.close()
        await storage.close()


def create_app(settings: Settings) -> web.Application:
    """Build the application; ``settings.database_url`` must point at a migrated database.

    Each protocol is a sub-application with its own error renderer: v1 under ``/v1``, v2
    under ``/v2``, the web UI under ``/ui``. The root serves the probes, the metrics and
    docker's ``/_ping``, and answers what no sub-application took in v1's legacy shape
    (``{"error": ...}``), as the original registry did.
    """
    app = web.Application(
        middlewares=[observe_middleware(v1_errors.render, v1_errors.render_internal)],
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics(settings.metrics_dir)
    app[LIFECYCLE] = Lifecycle()
    app[LOGIN_THROTTLE] = LoginThrottle.from_settings(settings)
    passwords.configure(settings.password_hash_threads, settings.password_hash_queue)
    app.on_response_prepare.append(add_request_id_header)
    app.cleanup_ctx.append(_services)
    app.cleanup_ctx.append(collect_in_background)
    ops_routes.add_routes(app)
    app.router.add_get("/_ping", get_ping)  # v1 spec §5.1: docker asks the root too
    app.add_subapp(v1_routes.PREFIX, v1_routes.create_app())
    # The mirror's hook only where upstreams are set: one middleware less per v2 request.
    mirror_hook = [mirror_middleware] if settings.upstreams else []
    app.add_subapp(v2_routes.PREFIX, v2_routes.create_app(mirror_hook))
    app.cleanup_ctx.append(v2_routes.expire_uploads_periodically)
    app.cleanup_ctx.append(mirror_context)
    mount_ui(app)
    return app
