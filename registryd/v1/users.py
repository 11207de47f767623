"""``/v1/users``: sign-up, login check and account updates (v1 spec §5.12, §9.3)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from registryd import jsonbody
from registryd.auth.credentials import resolve_caller
from registryd.domain import users
from registryd.errors import Unauthenticated, UserInvalid
from registryd.http.streaming import read_body
from registryd.keys import SERVICES
from registryd.v1.responses import json_response

MAX_USER_BODY_BYTES = 16 * 1024


async def _json_body(request: web.Request) -> Any:
    body = await read_body(request, MAX_USER_BODY_BYTES)
    return jsonbody.parse_or_raise(body, UserInvalid)


async def post_users(request: web.Request) -> web.Response:
    await users.sign_up(request.config_dict[SERVICES], await _json_body(request))
    return json_response("User Created", status=201)


async def get_users(request: web.Request) -> web.Response:
    """docker login's check: 200 for valid Basic credentials, 401/403 otherwise."""
    caller = await resolve_caller(request, request.config_dict[SERVICES])
    if caller.identity.is_anonymous or caller.via_token:
        raise Unauthenticated("Basic credentials required")
    return json_response("OK")


async def put_user(request: web.Request) -> web.Response:
    svc = request.config_dict[SERVICES]
    caller = await resolve_caller(request, svc)
    if caller.identity.is_anonymous or caller.via_token:
        raise Unauthenticated("Basic credentials required")
    await users.update_account(
        svc, caller.identity, request.match_info["username"], await _json_body(request)
    )
    return web.Response(status=204)
