"""``GET /v2/`` (spec end-1): how clients tell a registry (200, or 401 with a challenge)."""

from __future__ import annotations

from aiohttp import web

from registryd.v2.access import authenticate


async def get_base(request: web.Request) -> web.Response:
    await authenticate(request)
    return web.json_response({})
