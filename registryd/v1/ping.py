"""``GET /v1/_ping``: how docker decides this is a v1 registry (v1 spec §1.2, §5.1)."""

from __future__ import annotations

from aiohttp import web

from registryd.v1.responses import NO_CACHE, json_response

PING_HEADERS = {
    **NO_CACHE,
    "X-Docker-Registry-Version": "0.6.0",
    # Not standalone: we are our own index and want clients to use the token flow.
    "X-Docker-Registry-Standalone": "false",
}


async def get_ping(request: web.Request) -> web.Response:
    del request
    return json_response(True, headers=PING_HEADERS)
