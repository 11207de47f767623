"""``python -m bench.bare --port N``: the floor of an aiohttp server on uvloop.

One handler answering ``/blob`` with a fixed 1 KiB body (HEAD: its headers
only), no middlewares, no access log: what a request costs in aiohttp itself,
for ``python -m bench.profile head`` to compare registryd's round trip with.
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop
from aiohttp import web

BODY = b"x" * 1024


async def blob(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/octet-stream")


async def serve(port: int) -> None:
    app = web.Application()
    app.router.add_get("/blob", blob)  # GET routes answer HEAD too
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()  # until the bench terminates us


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve(parser.parse_args(argv).port))


if __name__ == "__main__":
    main()
