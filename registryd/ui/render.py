"""Rendering pages: templates and static files loaded once, the context every page shares."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from registryd.access.identity import ANONYMOUS, Identity
from registryd.keys import SERVICES
from registryd.ui import session

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
_CONTENT_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    version: str  # short content hash, in its URLs so that browsers may cache it for good


ASSETS = web.AppKey("ui_assets", dict[str, Asset])


def _read_assets() -> tuple[dict[str, str], dict[str, Asset]]:
    templates = {p.name: p.read_text("utf-8") for p in TEMPLATE_DIR.glob("*.html")}
    assets = {
        p.name: Asset(
            p.read_bytes(),
            _CONTENT_TYPES.get(p.suffix, "application/octet-stream"),
            hashlib.sha256(p.read_bytes()).hexdigest()[:12],
        )
        for p in STATIC_DIR.iterdir()
        if p.is_file()
    }
    return templates, assets


async def load_assets(app: web.Application) -> None:
    """Read templates and static files into memory (a few KiB), off the event loop."""
    templates, assets = await asyncio.to_thread(_read_assets)
    aiohttp_jinja2.get_env(app).loader = jinja2.DictLoader(templates)
    app[ASSETS] = assets


def static_url(request: web.Request, name: str) -> str:
    return f"/ui/static/{name}?v={request.app[ASSETS][name].version}"


async def static_file(request: web.Request) -> web.Response:
    asset = request.app[ASSETS].get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound()
    current = request.query.get("v") == asset.version
    return web.Response(
        body=asset.body,
        content_type=asset.content_type,
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=31536000, immutable" if current else "no-cache"},
    )


async def page(
    request: web.Request,
    template: str,
    *,
    status: int = 200,
    identity: Identity | None = None,
    **context: Any,
) -> web.Response:
    """Render ``template`` with the viewer, a CSRF token for its forms, and ``context``."""
    if identity is None:
        try:
            identity = await session.viewer(request)
        except Exception:  # noqa: BLE001 - an error page must render even without a database
            identity = ANONYMOUS
    settings = request.config_dict[SERVICES].settings
    context.update(
        viewer=identity,
        csrf_field=session.CSRF_FIELD,
        csrf_token=session.csrf_token(request),
        static=lambda name: static_url(request, name),
        auth_off=settings.auth_mode == "none",
    )
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    session.store_csrf(request, response)
    return response
