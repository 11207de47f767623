"""body_chunks: full chunks from one reused buffer, whatever the framing; limits still enforced."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient

from registryd.errors import BodyIncomplete, BodyTooLarge
from registryd.http.streaming import WRITE_CHUNK_BYTES, body_chunks, read_body
from tests.conftest import Client
from tests.support.images import random_bytes

BODY = random_bytes(2 * WRITE_CHUNK_BYTES + 12345, seed=11)
LIMIT_BYTES = 3 * WRITE_CHUNK_BYTES


async def _chunks(request: web.Request) -> web.Response:
    """Answer with the chunk sizes, the body's sha256 and how many buffers backed the chunks."""
    sizes = []
    digest = hashlib.sha256()
    buffers = set()
    try:
        async for chunk in body_chunks(request, LIMIT_BYTES):
            sizes.append(len(chunk))
            digest.update(chunk)
            buffers.add(id(chunk.obj))
    except BodyTooLarge:
        return web.json_response({"error": "too large"}, status=413)
    except BodyIncomplete:
        return web.json_response({"error": "incomplete"}, status=400)
    return web.json_response(
        {"sizes": sizes, "sha256": digest.hexdigest(), "buffers": len(buffers)}
    )


async def _echo(request: web.Request) -> web.Response:
    return web.Response(body=await read_body(request, LIMIT_BYTES))


@pytest.fixture
async def app_client(aiohttp_client: AiohttpClient) -> Client:
    app = web.Application()
    app.router.add_put("/chunks", _chunks)
    app.router.add_put("/echo", _echo)
    return await aiohttp_client(app)


async def _in_pieces(data: bytes, piece_bytes: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece_bytes):
        yield data[start : start + piece_bytes]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_body_arrives_in_full_chunks_of_one_buffer(app_client: Client, framing: str) -> None:
    body: io.BytesIO | AsyncIterator[bytes] = (
        io.BytesIO(BODY) if framing == "content-length" else _in_pieces(BODY, 100_000)
    )
    resp = await app_client.put("/chunks", data=body)
    assert resp.status == 200
    result = await resp.json()
    assert result["sizes"] == [WRITE_CHUNK_BYTES, WRITE_CHUNK_BYTES, 12345]
    assert result["sha256"] == hashlib.sha256(BODY).hexdigest()
    assert result["buffers"] == 1  # reused, not one allocation per chunk


async def test_chunked_body_over_the_limit_is_refused(app_client: Client) -> None:
    body = _in_pieces(random_bytes(LIMIT_BYTES + 1, seed=12), 256 * 1024)
    resp = await app_client.put("/chunks", data=body)
    assert resp.status == 413


@pytest.mark.parametrize("body", [b"", b"{}", BODY])
async def test_read_body_returns_the_exact_bytes(app_client: Client, body: bytes) -> None:
    resp = await app_client.put("/echo", data=io.BytesIO(body))
    assert resp.status == 200
    assert await resp.read() == body
