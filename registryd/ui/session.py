"""The UI's session and CSRF cookies.

Both are scoped to ``Path=/ui``, HttpOnly and SameSite=Strict (Secure under TLS), and
only the UI reads them: the registry APIs authenticate from the Authorization header
alone, so a browser's cookie can never act on them.

The session is stateless: ``username.expires.mac``, the MAC keyed by a key derived from
the token secret and covering a fingerprint of the user's password hash, so a changed
password ends every session. The user row is read on every request, so a disabled
account or a lost admin flag takes effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from aiohttp import web

from registryd.access.identity import ANONYMOUS, Identity
from registryd.db import user_queries
from registryd.keys import SERVICES, USER

SESSION_COOKIE = "registryd_session"
CSRF_COOKIE = "registryd_csrf"
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/ui"
SESSION_TTL_SECONDS = 12 * 3600

VIEWER = web.RequestKey("ui_viewer", Identity)
_CSRF_VALUE = web.RequestKey("ui_csrf_value", str)


def _key(request: web.Request, purpose: bytes) -> bytes:
    """A key per purpose, derived so that UI MACs never verify as API tokens (or back)."""
    secret = request.config_dict[SERVICES].token_secret
    return hmac.new(secret, b"registryd-ui:" + purpose, hashlib.sha256).digest()


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def _session_mac(request: web.Request, username: str, expires: int, password_hash: str) -> str:
    fingerprint = hashlib.sha256(password_hash.encode()).hexdigest()
    return _mac(_key(request, b"session"), f"{username}\n{expires}\n{fingerprint}")


def _set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        max_age=SESSION_TTL_SECONDS if name == SESSION_COOKIE else None,
    )


def start_session(
    request: web.Request, response: web.StreamResponse, username: str, password_hash: str
) -> None:
    """Sign the user in on ``response``, with a fresh CSRF value (no fixation of either)."""
    expires = int(time.time()) + SESSION_TTL_SECONDS
    mac = _session_mac(request, username, expires, password_hash)
    _set_cookie(response, request, SESSION_COOKIE, f"{username}.{expires}.{mac}")
    rotate_csrf(request, response)


def end_session(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    rotate_csrf(request, response)


async def viewer(request: web.Request) -> Identity:
    """The signed-in user, or anonymous when the cookie is absent, forged, stale or the
    account is gone or disabled."""
    if VIEWER in request:
        return request[VIEWER]
    request[VIEWER] = identity = await _identity(request)
    if identity.username is not None:
        request[USER] = identity.username
    return identity


async def _identity(request: web.Request) -> Identity:
    raw = request.cookies.get(SESSION_COOKIE, "")
    parts = raw.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or len(parts[0]) > 64:
        return ANONYMOUS
    username, expires_text, mac = parts
    expires = int(expires_text)
    if expires < time.time():
        return ANONYMOUS
    async with request.config_dict[SERVICES].pool.acquire() as conn:
        user = await user_queries.fetch_user(conn, username)
    if user is None or not user.is_active:
        return ANONYMOUS
    expected = _session_mac(request, username, expires, user.password_hash)
    if not hmac.compare_digest(expected, mac):
        return ANONYMOUS
    return Identity(user.username, user.is_admin)


# CSRF: a random value in its own cookie; forms carry its MAC. A forged form from another
# site has neither the value (HttpOnly, SameSite=Strict) nor the key to MAC it.


def rotate_csrf(request: web.Request, response: web.StreamResponse) -> None:
    value = secrets.token_urlsafe(32)
    request[_CSRF_VALUE] = value
    _set_cookie(response, request, CSRF_COOKIE, value)


def csrf_value(request: web.Request) -> str:
    """The request's CSRF cookie value, a new one (set by ``store_csrf``) if it has none."""
    if _CSRF_VALUE not in request:
        value = request.cookies.get(CSRF_COOKIE, "")
        request[_CSRF_VALUE] = value if 20 <= len(value) <= 100 else secrets.token_urlsafe(32)
    return request[_CSRF_VALUE]


def csrf_token(request: web.Request) -> str:
    """What forms carry in ``csrf_token``."""
    return _mac(_key(request, b"csrf"), csrf_value(request))


def store_csrf(request: web.Request, response: web.StreamResponse) -> None:
    """Set the CSRF cookie if this response's forms used a value the browser lacks.

    Called on the rendered response: cookies set in ``on_response_prepare`` come too late.
    """
    value = request.get(_CSRF_VALUE)
    if value is not None and request.cookies.get(CSRF_COOKIE) != value:
        _set_cookie(response, request, CSRF_COOKIE, value)


def csrf_ok(request: web.Request, submitted: str) -> bool:
    value = request.cookies.get(CSRF_COOKIE, "")
    if not value or not submitted:
        return False
    return hmac.compare_digest(_mac(_key(request, b"csrf"), value), submitted)
