"""The bench's load generator: a failed request must not poison the next one on its connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.pytest_plugin import AiohttpServer

from bench import report
from bench.loadgen import Connection, HttpError, Operation, RunResult, run_load

BIG_CHUNK = b"x" * (1024 * 1024)


async def _ok(request: web.Request) -> web.Response:
    async for _ in request.content.iter_any():
        pass
    return web.Response(text="ok")


async def _conflict(request: web.Request) -> web.Response:
    # Answers without reading the body, as a registry does for an image that exists.
    return web.Response(status=409, text="exists")


async def _port(aiohttp_server: AiohttpServer) -> int:
    app = web.Application()
    app.router.add_route("*", "/ok", _ok)
    app.router.add_route("*", "/conflict", _conflict)
    server = await aiohttp_server(app)
    assert server.port is not None
    return server.port


async def _big_body(chunks: int) -> AsyncIterator[bytes]:
    for _ in range(chunks):
        yield BIG_CHUNK


async def test_request_after_close_opens_a_new_connection(aiohttp_server: AiohttpServer) -> None:
    conn = Connection("127.0.0.1", await _port(aiohttp_server))
    try:
        assert (await conn.request("GET", "/conflict")).status == 409
        conn.close()
        # Before the fix this reused the closing transport and failed with "connection lost".
        assert (await conn.request("GET", "/ok")).status == 200
    finally:
        conn.close()


async def test_early_answer_to_a_streamed_body_leaves_the_connection_usable(
    aiohttp_server: AiohttpServer,
) -> None:
    conn = Connection("127.0.0.1", await _port(aiohttp_server))
    size = 64 * len(BIG_CHUNK)
    try:
        try:
            resp = await conn.request("PUT", "/conflict", body=_big_body(64), body_bytes=size)
            assert resp.status == 409
        except ConnectionResetError:
            pass  # the server may also close the connection under the unread body
        resp = await conn.request("PUT", "/ok", body=_big_body(2), body_bytes=2 * len(BIG_CHUNK))
        assert resp.status == 200
    finally:
        conn.close()


async def test_run_load_counts_each_failure_once_with_its_kind(
    aiohttp_server: AiohttpServer,
) -> None:
    port = await _port(aiohttp_server)

    async def fail(conn: Connection) -> int:
        resp = await conn.request("GET", "/conflict")
        raise HttpError(f"HTTP {resp.status}")

    async def succeed(conn: Connection) -> int:
        return (await conn.request("GET", "/ok")).body_bytes

    operations: list[Operation] = [fail, succeed] * 5
    result = await run_load(
        "127.0.0.1",
        port,
        operations,
        concurrency=1,
        max_seconds=30,
        max_operations=len(operations),
    )
    assert result.errors == 5
    assert result.requests == 5
    assert result.error_kinds == {"HttpError: HTTP 409": 5}


def _point(errors: int) -> report.Point:
    point = report.Point("push", "16 MiB", 1, "MB/s")
    for target, failed in (("registryd", errors), ("distribution", 0)):
        result = RunResult(requests=4, body_bytes=4_000_000, errors=failed, seconds=1.0)
        result.error_kinds["HttpError: HTTP 409"] = failed
        point.samples[target] = [report.Sample(result, 1.0, 1.0, 0)]
    return point


def test_report_marks_points_with_failures_as_invalid() -> None:
    text = report.render([_point(errors=3)], command="c", machine="m", plan="p", minutes=0.0)
    ratios = next(line for line in text.splitlines() if line.startswith("| push | 16 MiB | 1 | 4"))
    assert "(3 FAILED)" in ratios
    assert "INVALID" in ratios
    assert "## Failures" in text
    assert "3 x HttpError: HTTP 409" in text


def test_report_of_a_clean_run_says_so() -> None:
    text = report.render([_point(errors=0)], command="c", machine="m", plan="p", minutes=0.0)
    assert "FAILED" not in text
    assert "INVALID" not in text
    assert "Every request of every point succeeded." in text
