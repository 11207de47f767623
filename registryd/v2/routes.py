"""The v2 sub-application: its route table, its error renderer and its mirror hook; and the
expiry of abandoned upload sessions. Paths below are relative to the ``/v2`` prefix."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from registryd.domain import uploads as upload_sessions
from registryd.http.middleware import error_middleware
from registryd.keys import SERVICES
from registryd.v2 import base, blobs, errors, manifests, referrers, tags, token, uploads
from registryd.v2.access import TOKEN_PATH
from registryd.v2.url_grammar import add_api_version

log = logging.getLogger(__name__)

# <name> is checked against the spec's grammar by the handlers (400 NAME_INVALID
# rather than a 404), so the route takes any path up to the resource words.
_NAME = "/{name:.+}"

PREFIX = "/v2"


async def expire_uploads_periodically(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context of the parent app (which provides SERVICES)."""
    svc = app[SERVICES]
    period = max(60, svc.settings.stale_upload_seconds // 4)

    async def expire() -> None:
        removed = await upload_sessions.expire_uploads(svc)
        if removed:
            log.info("expired %d abandoned upload session(s)", removed)
        released = await upload_sessions.release_leftover_claims(svc)
        if released:
            log.info("released %d upload claim(s) left by failed requests", released)

    async def run() -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await expire()
            except Exception:
                # A database or storage hiccup must not end expiry for the process's lifetime.
                log.exception("expiring upload sessions failed")

    await expire()  # at start-up, before serving
    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", base.get_base)
    r.add_get("", base.get_base)  # /v2 itself
    r.add_get("/_catalog", tags.get_catalog)
    r.add_get(TOKEN_PATH.removeprefix(PREFIX), token.get_token)

    # Pulls first: aiohttp tries the <name> routes in order, one regex match each. No
    # request a blob or manifest route takes is another route's too (their paths end in
    # "/blobs/<digest>" and "/manifests/<reference>", neither holding a "/"; the one
    # shared path, "<name>/blobs/uploads", is POST's only there), so the order decides
    # nothing but how many patterns a pull tries.
    blob = _NAME + "/blobs/{digest}"
    r.add_get(blob, blobs.get_blob)  # GET also answers HEAD
    r.add_delete(blob, blobs.delete_blob)

    manifest = _NAME + "/manifests/{reference}"
    r.add_get(manifest, manifests.get_manifest)
    r.add_put(manifest, manifests.put_manifest)
    r.add_delete(manifest, manifests.delete_manifest)

    r.add_get(_NAME + "/tags/list", tags.get_tags)
    # Upload sessions: "/blobs/uploads" also matches the blob route, with other methods.
    r.add_post(_NAME + "/blobs/uploads/", uploads.post_upload)
    r.add_post(_NAME + "/blobs/uploads", uploads.post_upload)
    upload = _NAME + "/blobs/uploads/{upload_id}"
    r.add_get(upload, uploads.get_upload, allow_head=False)
    r.add_patch(upload, uploads.patch_upload)
    r.add_put(upload, uploads.put_upload)
    r.add_delete(upload, uploads.delete_upload)

    r.add_get(_NAME + "/referrers/{digest}", referrers.get_referrers, allow_head=False)


def create_app(inner_middlewares: Sequence[Middleware] = ()) -> web.Application:
    """The v2 API, to mount at ``PREFIX``; its errors are the spec's ``{"errors": [...]}``.

    ``inner_middlewares`` (the mirror's hook) run inside the error middleware, so their
    domain errors render as v2's.
    """
    v2 = web.Application(
        middlewares=[error_middleware(errors.render, errors.render_internal), *inner_middlewares]
    )
    add_routes(v2)
    v2.on_response_prepare.append(add_api_version)
    return v2
