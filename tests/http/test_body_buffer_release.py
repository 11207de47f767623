"""body_chunks gives its buffer back as the body ends, not when the caller's loop variable
goes: a caller that stores the bytes after its loop (an object store's PutObject) does
not hold the request's buffer meanwhile."""

from __future__ import annotations

import io

import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient

from registryd.http.streaming import WRITE_CHUNK_BYTES, body_chunks
from tests.conftest import Client
from tests.support.images import random_bytes


async def _last_chunk_after_the_loop(request: web.Request) -> web.Response:
    chunk = None
    seen = 0
    async for chunk in body_chunks(request, 0):
        seen += len(chunk)
    assert chunk is not None
    try:
        len(chunk)
    except ValueError:
        return web.json_response({"seen": seen, "released": True})
    return web.json_response({"seen": seen, "released": False})


@pytest.fixture
async def app_client(aiohttp_client: AiohttpClient) -> Client:
    app = web.Application()
    app.router.add_put("/last", _last_chunk_after_the_loop)
    return await aiohttp_client(app)


@pytest.mark.parametrize("size", [WRITE_CHUNK_BYTES, 2 * WRITE_CHUNK_BYTES + 7, 100])
async def test_the_last_chunk_is_released_once_the_body_ends(app_client: Client, size: int) -> None:
    body = random_bytes(size, seed=5)
    async with app_client.put("/last", data=io.BytesIO(body)) as resp:
        assert resp.status == 200
        assert await resp.json() == {"seen": size, "released": True}
