"""Rendering pages: templates and static files loaded once, the context every page shares."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from registryd.auth.identity import ANONYMOUS, Identity
from registryd.keys import SERVICES
from registryd.ui import session

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
# Static file name -> short content hash, appended to its URLs so browsers may cache them.
ASSET_VERSIONS = web.AppKey("ui_asset_versions", dict[str, str])


def _read_assets() -> tuple[dict[str, str], dict[str, str]]:
    templates = {p.name: p.read_text("utf-8") for p in TEMPLATE_DIR.glob("*.html")}
    versions = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in STATIC_DIR.iterdir()
    }
    return templates, versions


async def load_assets(app: web.Application) -> None:
    templates, versions = await asyncio.to_thread(_read_assets)
    aiohttp_jinja2.get_env(app).loader = jinja2.DictLoader(templates)
    app[ASSET_VERSIONS] = versions


def static_url(request: web.Request, name: str) -> str:
    version = request.app[ASSET_VERSIONS].get(name, "0")
    return f"/ui/static/{name}?v={version}"


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
    return aiohttp_jinja2.render_template(template, request, context, status=status)
