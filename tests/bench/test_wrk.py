"""wrk drives the pull points: it rotates the paths, sends the headers, and its failures,
CPU and latency come back in the RunResult the report reads."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpServer

from bench import wrk
from bench.wrk import WrkLoad

pytestmark = pytest.mark.skipif(not wrk.available(), reason="wrk is not installed")

BODY = b"b" * 4096


async def _server(aiohttp_server: AiohttpServer, seen: Counter[tuple[str, str]]) -> int:
    async def blob(request: web.Request) -> web.Response:
        seen[(request.path, request.headers.get("Authorization", ""))] += 1
        if request.headers.get("Authorization") != "Bearer good":
            return web.Response(status=401)
        return web.Response(body=BODY)

    app = web.Application()
    app.router.add_get("/blobs/{name}", blob)
    server = await aiohttp_server(app)
    assert server.port is not None
    return server.port


async def test_wrk_rotates_paths_with_the_header_and_counts_bodies(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    seen: Counter[tuple[str, str]] = Counter()
    port = await _server(aiohttp_server, seen)
    load = WrkLoad(["/blobs/a", "/blobs/b"], [len(BODY)] * 2, {"Authorization": "Bearer good"})
    run = await wrk.run("127.0.0.1", port, load, 2, 0.5, tmp_path, None)
    result = run.result
    assert result.errors == 0
    assert result.requests > 10
    assert result.body_bytes == result.requests * len(BODY)
    assert set(seen) == {("/blobs/a", "Bearer good"), ("/blobs/b", "Bearer good")}
    # Each connection alternates the two paths: neither is left out.
    assert abs(seen[("/blobs/a", "Bearer good")] - seen[("/blobs/b", "Bearer good")]) <= 4
    assert 0.3 < result.seconds < 5
    assert result.percentiles is not None
    assert 0 < result.percentiles[0] <= result.percentiles[1]
    assert run.client_cpu_seconds > 0  # wrk's own CPU time, from the kernel's accounting


async def test_refused_requests_are_failures_not_throughput(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    seen: Counter[tuple[str, str]] = Counter()
    port = await _server(aiohttp_server, seen)
    load = WrkLoad(["/blobs/a"], [len(BODY)], {"Authorization": "Bearer expired"})
    result = (await wrk.run("127.0.0.1", port, load, 1, 0.3, tmp_path, None)).result
    assert result.requests == 0
    assert result.body_bytes == 0
    assert result.errors > 0
    assert result.error_kinds == {"wrk: HTTP status >= 400": result.errors}


def test_lua_script_quotes_paths_and_headers() -> None:
    script = wrk.lua_script(WrkLoad(['/a"b', "/c"], [1, 1], {"Authorization": 'x "y"'}))
    assert 'local paths = {"/a\\"b", "/c"}' in script
    assert '["Authorization"] = "x \\"y\\""' in script


def test_a_run_without_a_result_line_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no result"):
        wrk.parse("unable to connect to 127.0.0.1:1 Connection refused\n", WrkLoad(["/"], [1]))


async def test_large_bodies_in_flight_count_by_the_bytes_read(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """A run shorter than one response (128 MiB at c = 256) still measures throughput."""
    size, chunk = wrk.LARGE_BODY_BYTES * 4, b"s" * 65536

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(size)})
        await response.prepare(request)
        for _ in range(size // len(chunk)):
            await response.write(chunk)
            await asyncio.sleep(0.05)  # 4 MiB take ~3 s; the run lasts 0.5 s
        return response

    app = web.Application()
    app.router.add_get("/slow", slow)
    server = await aiohttp_server(app)
    assert server.port is not None
    result = (
        await wrk.run("127.0.0.1", server.port, WrkLoad(["/slow"], [size]), 1, 0.5, tmp_path, None)
    ).result
    assert result.requests == 0
    assert 65536 <= result.body_bytes < size
