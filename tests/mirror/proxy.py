"""A counting reverse proxy between the mirror and a real upstream registry.

It forwards every request as it came (Host included, so the upstream's token
realm points back through it), counts what it forwarded, and can fail the way
networks do: refuse everything (``down``), cut a blob body after some bytes
(``cut_blobs_after``) or damage its last byte (``corrupt_blobs``). The upstream
behind it is always a real registry.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Proxy:
    upstream_url: str
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    down: bool = False
    cut_blobs_after: int | None = None
    # A slow link for blob bodies: this pause after every 64 KiB.
    chunk_delay_seconds: float = 0.0
    # Accept requests and never answer them.
    stall: bool = False
    # Flip the last byte of every blob body (same length, another digest).
    corrupt_blobs: bool = False
    # Set once a blob GET has been forwarded.
    blob_get_forwarded: asyncio.Event = field(default_factory=asyncio.Event)
    # When (loop time) the last blob GET's body was sent completely.
    blob_get_finished_at: float | None = None
    server: TestServer | None = None
    _session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    def count(self, method: str, path: str) -> int:
        return self.requests[(method, path)]

    def count_prefix(self, method: str, prefix: str) -> int:
        return sum(n for (m, p), n in self.requests.items() if m == method and p.startswith(prefix))

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._forward_once(request)
        except aiohttp.ClientError:
            # The upstream is gone (refused, or died mid-body): so is this connection.
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=502)

    async def _forward_once(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            assert request.transport is not None
            request.transport.close()  # as if nothing listened
            return web.Response(status=502)
        self.requests[(request.method, request.path)] += 1
        if request.method == "GET" and "/blobs/" in request.path:
            self.blob_get_forwarded.set()
        if self.stall:
            await asyncio.sleep(3600)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Host"] = request.host
        async with self._session.request(
            request.method,
            self.upstream_url + request.path_qs,
            headers=headers,
            data=await request.read() if request.can_read_body else None,
            allow_redirects=False,
        ) as upstream:
            out_headers = {
                k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP
            }
            response = web.StreamResponse(status=upstream.status, headers=out_headers)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            sent = 0
            cut = self.cut_blobs_after if "/blobs/" in request.path else None
            corrupt = self.corrupt_blobs and request.method == "GET" and "/blobs/" in request.path
            async for chunk in upstream.content.iter_chunked(64 * 1024):
                if corrupt and sent + len(chunk) == upstream.content_length:
                    chunk = chunk[:-1] + bytes([chunk[-1] ^ 0xFF])
                if cut is not None and sent + len(chunk) > cut:
                    await response.write(chunk[: cut - sent])
                    assert request.transport is not None
                    request.transport.close()  # the upstream "dies" mid-body
                    return response
                await response.write(chunk)
                sent += len(chunk)
                if self.chunk_delay_seconds and "/blobs/" in request.path:
                    await asyncio.sleep(self.chunk_delay_seconds)
            await response.write_eof()
            if request.method == "GET" and "/blobs/" in request.path:
                self.blob_get_finished_at = asyncio.get_running_loop().time()
            return response
