"""The /ui sub-application: templates, static files, security headers and HTML errors."""

from __future__ import annotations

import logging

import aiohttp_jinja2
import jinja2
from aiohttp import web

from registryd.errors import (
    AccessDenied,
    ManifestUnknown,
    RegistryError,
    RepositoryUnknown,
    TagUnknown,
    Unauthenticated,
    UserExists,
    UserUnknown,
)
from registryd.http.middleware import Handler, request_id
from registryd.ui import display
from registryd.ui.render import load_assets, page, static_file
from registryd.ui.views import account, admin, catalog, image, repository

log = logging.getLogger(__name__)

PREFIX = "/ui"

# Everything comes from this server; no inline script or style, no framing, no plugins.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(_SECURITY_HEADERS)
    if not request.path.startswith(f"{PREFIX}/static/"):
        # Pages show private content to whoever is signed in: no shared caches, no back-button.
        response.headers["Cache-Control"] = "no-store"


def _status_of(exc: RegistryError) -> int:
    if isinstance(exc, Unauthenticated):
        return 401
    if isinstance(exc, AccessDenied):
        return 403
    if isinstance(exc, RepositoryUnknown | ManifestUnknown | TagUnknown | UserUnknown):
        return 404
    if isinstance(exc, UserExists):
        return 409
    return 400


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as pages (the parent app would answer the APIs' JSON)."""
    try:
        return await handler(request)
    except RegistryError as exc:
        status, message = _status_of(exc), str(exc) or type(exc).__name__
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        status, message = exc.status, exc.reason
        if isinstance(exc, web.HTTPNotFound):
            message = "Not found (or not visible to you)"
    except Exception:
        log.exception("ui request %s %s failed", request_id(request), request.path)
        status, message = 500, f"Internal server error (request id {request_id(request)})"
    return await page(request, "error.html", status=status, message=message)


def create_ui_app() -> web.Application:
    ui = web.Application(middlewares=[_errors])
    # Templates are read into memory at start-up (off the loop): rendering never touches disk.
    env = aiohttp_jinja2.setup(
        ui,
        loader=jinja2.DictLoader({}),
        autoescape=True,  # every string on a page came from some user
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        size=display.human_size,
        when=display.when,
        short=display.short_digest,
        path=display.path_part,
    )
    ui.on_response_prepare.append(_headers)
    ui.on_startup.append(load_assets)
    ui.add_routes(
        [
            web.get("/", catalog.catalog, name="catalog"),
            web.get("/mine", catalog.mine, name="mine"),
            web.get("/login", account.login_form, name="login"),
            web.post("/login", account.login),
            web.post("/logout", account.logout, name="logout"),
            web.get("/admin/users", admin.users, name="admin_users"),
            web.post("/admin/users", admin.create_user),
            web.post("/admin/users/{username}", admin.change_user),
            web.get("/admin/storage", admin.storage, name="admin_storage"),
            web.get("/admin/mirrors", admin.mirrors, name="admin_mirrors"),
            web.get("/admin/gc", admin.garbage_collection, name="admin_gc"),
            web.get("/r/{name:.+?}/-/manifest/{digest}", image.manifest),
            web.get("/r/{name:.+?}/-/v1/{image_id}", image.v1_image),
            web.post("/r/{name:.+?}/-/visibility", repository.set_visibility),
            web.post("/r/{name:.+?}/-/delete-tag", repository.delete_tag),
            web.post("/r/{name:.+?}/-/delete-manifest", repository.delete_manifest),
            web.get("/r/{name:.+}", repository.repository),
            web.get("/static/{name}", static_file),
        ]
    )
    return ui


async def _to_ui(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"{PREFIX}/")


def mount(app: web.Application) -> None:
    """Serve the UI under /ui/ of ``app`` (which provides SERVICES)."""
    app.router.add_get(PREFIX, _to_ui)
    app.add_subapp(PREFIX, create_ui_app())
