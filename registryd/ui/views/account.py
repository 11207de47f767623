"""Signing in and out of the UI (the APIs keep Basic and tokens only)."""

from __future__ import annotations

from aiohttp import web

from registryd.db import queries
from registryd.domain import users
from registryd.errors import AccessDenied, Unauthenticated
from registryd.keys import SERVICES
from registryd.ui import session
from registryd.ui.forms import checked_form, notice, see_other
from registryd.ui.render import page
from registryd.ui.throttle import THROTTLE

_MAX_FIELD_CHARS = 512


def _next_url(text: str | None) -> str:
    """Where to go after signing in: a UI path only (no open redirect)."""
    if text and text.startswith("/ui/") and "//" not in text and "\\" not in text:
        return text
    return "/ui/"


async def login_form(request: web.Request) -> web.Response:
    return await page(
        request,
        "login.html",
        next_url=_next_url(request.query.get("next")),
        error=None,
        username="",
        notice=notice(request),
    )


async def login(request: web.Request) -> web.StreamResponse:
    fields = await checked_form(request)
    username = fields.get("username", "")[:_MAX_FIELD_CHARS]
    password = fields.get("password", "")[:_MAX_FIELD_CHARS]
    next_url = _next_url(fields.get("next"))
    throttle = request.app[THROTTLE]
    address = request.remote or "unknown"

    async def refuse(status: int, error: str) -> web.Response:
        return await page(
            request,
            "login.html",
            status=status,
            next_url=next_url,
            error=error,
            username=username,
            notice=None,
        )

    if (wait := throttle.retry_after(address)) > 0:
        response = await refuse(429, f"Too many failed sign-ins; try again in {wait} s.")
        response.headers["Retry-After"] = str(wait)
        return response
    svc = request.config_dict[SERVICES]
    try:
        identity = await users.authenticate(svc, username, password)
    except (Unauthenticated, AccessDenied):
        throttle.failed(address)
        return await refuse(401, "Wrong username or password, or the account is disabled.")
    async with svc.pool.acquire() as conn:
        user = await queries.fetch_user(conn, identity.username or "")
    if user is None:
        return await refuse(401, "The account is gone.")
    response = see_other(next_url)
    session.start_session(request, response, user.username, user.password_hash)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    await checked_form(request)
    response = see_other("/ui/login?notice=signed-out")
    session.end_session(request, response)
    return response
