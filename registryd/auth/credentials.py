"""Who the caller is: anonymous, a user (HTTP Basic), or the holder of v1 tokens (v1 spec §4.1)."""

from __future__ import annotations

import base64
import binascii

from aiohttp import web

from registryd.access.decision import Caller as Caller
from registryd.access.identity import ANONYMOUS, Identity
from registryd.auth import bearer
from registryd.auth.throttle import LOGIN_THROTTLE
from registryd.auth.tokens import parse_token_header, verify_token
from registryd.domain import users
from registryd.domain.services import Services
from registryd.errors import RequestInvalid, Unauthenticated
from registryd.http.client_address import client_address

CALLER = web.RequestKey("caller", Caller)

# Bearer tokens are verified once per process, not on every request (see VerifiedTokens).
VERIFIED_TOKENS = bearer.VerifiedTokens()


def parse_basic(value: str) -> tuple[str, str]:
    """(username, password) from the part after ``Basic``; raise Unauthenticated if malformed."""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("Malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        raise Unauthenticated("Malformed Basic credentials")
    if not username.isprintable():
        raise RequestInvalid("Basic credentials: the username holds control characters")
    return username, password


async def login(request: web.Request, svc: Services, username: str, password: str) -> Identity:
    """``users.authenticate``, throttled per client address and account (see throttle.py).

    Every way to present a password (Basic on the APIs, the web UI's form) comes here.
    Raises Unauthenticated, AccessDenied, TooManyRequests.
    """
    throttle = request.config_dict.get(LOGIN_THROTTLE)
    if throttle is None:
        return await users.authenticate(svc, username, password)
    address = client_address(request, svc.settings.trusted_proxies)
    try:
        return await users.authenticate(
            svc, username, password, lambda: throttle.check(address, username)
        )
    except Unauthenticated:
        throttle.failed(address, username)
        raise


async def resolve_caller(request: web.Request, svc: Services) -> Caller:
    """Identify the caller once per request; raise Unauthenticated for bad credentials.

    Credentials that are sent must be valid even where none are needed
    (v1 spec §5.11: "if one is provided, it needs to be valid").
    """
    if CALLER in request:
        return request[CALLER]
    header = request.headers.get("Authorization", "").strip()
    if not header.isascii() or not header.isprintable():
        # Non-UTF-8 bytes arrive as lone surrogates; no credential holds them.
        raise RequestInvalid("The Authorization header must be printable ASCII")
    scheme, _, value = header.partition(" ")
    if not header:
        caller = Caller(ANONYMOUS)
    elif scheme.lower() == "basic":
        username, password = parse_basic(value)
        caller = Caller(await login(request, svc, username, password))
    elif scheme.lower() == "token":
        tokens = parse_token_header(value)
        if not tokens:
            raise Unauthenticated("Invalid token")
        grants = [verify_token(svc.token_secret, fields) for fields in tokens]
        names = {g.username for g in grants}
        identity = Identity(names.pop()) if len(names) == 1 and "" not in names else ANONYMOUS
        caller = Caller(identity, grants)
    elif scheme.lower() == "bearer":
        # v2 clients present the JWT our token endpoint issued (Docker token flow).
        subject, grants, scoped = VERIFIED_TOKENS.verify(svc.token_secret, value.strip())
        identity = Identity(subject) if subject else ANONYMOUS
        caller = Caller(identity, grants, bearer=True, token_scopes=scoped)
    else:
        raise Unauthenticated("Unsupported authorization scheme")
    request[CALLER] = caller
    return caller
