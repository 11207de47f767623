"""Signing in and out of the UI (the APIs keep Basic and tokens only)."""

from __future__ import annotations

from aiohttp import web

from registryd.auth import credentials
from registryd.db import user_queries
from registryd.errors import AccessDenied, TooManyRequests, Unauthenticated
from registryd.keys import SERVICES
from registryd.ui import session
from registryd.ui.forms import checked_form, notice, see_other
from registryd.ui.render import page

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

    svc = request.config_dict[SERVICES]
    try:
        # The APIs' login: the same throttle per address and per account.
        identity = await credentials.login(request, svc, username, password)
    except TooManyRequests as exc:
        wait = exc.retry_after
        response = await refuse(429, f"Too many failed sign-ins; try again in {wait} s.")
        response.headers["Retry-After"] = str(wait)
        return response
    except (Unauthenticated, AccessDenied):
        return await refuse(401, "Wrong username or password, or the account is disabled.")
    async with svc.pool.acquire() as conn:
        user = await user_queries.fetch_user(conn, identity.username or "")
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
