"""``python -m bench.bare --port N``: the floor of an aiohttp server on uvloop.

One handler answering ``/blob`` with a fixed 1 KiB body (HEAD: its headers
only), no middlewares, no access log: what a request costs in aiohttp itself,
for ``python -m bench.profile head`` to compare registryd's round trip with.

With ``--root DIR``, ``/blobs/<name>`` also serves ``DIR/blobs/<name>`` the way
registryd sends a blob body (one descriptor per file kept open, the status line
and headers written, then ``os.sendfile`` on the loop by ``registryd.http.sendfile``):
the floor of a 1 MiB GET in aiohttp, for ``python -m bench.profile get``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import uvloop
from aiohttp import web
from aiohttp.http_writer import StreamWriter

from registryd.http import sendfile

BODY = b"x" * 1024
ROOT = web.AppKey("root", Path)
FILES = web.AppKey("files", dict[str, tuple[int, int]])


async def blob(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/octet-stream")


async def blob_file(request: web.Request) -> web.StreamResponse:
    files = request.app[FILES]
    name = request.match_info["name"]
    if (found := files.get(name)) is None:
        fd = os.open(request.app[ROOT] / "blobs" / name, os.O_RDONLY)
        found = files[name] = (fd, os.fstat(fd).st_size)
    fd, size = found
    response = web.StreamResponse(
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)}
    )
    writer = await response.prepare(request)
    sock = sendfile.usable(request.transport)
    assert isinstance(writer, StreamWriter)
    assert sock is not None
    writer.send_headers()
    await sendfile.send_file_range(request.transport, sock, fd, 0, size)  # type: ignore[arg-type]
    await response.write_eof()
    return response


async def serve(port: int, root: Path | None) -> None:
    app = web.Application()
    app.router.add_get("/blob", blob)  # GET routes answer HEAD too
    if root is not None:
        app[ROOT], app[FILES] = root, {}
        app.router.add_get("/blobs/{name}", blob_file, allow_head=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()  # until the bench terminates us


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, help="serve DIR/blobs/<name> at /blobs/<name>")
    args = parser.parse_args(argv)
    uvloop.run(serve(args.port, args.root))


if __name__ == "__main__":
    main()
