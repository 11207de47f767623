"""Layer bodies from a real ``registryd serve`` (uvloop): zero-copy sendfile and the copy path."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.process.conftest import Launcher
from tests.support.images import make_image, random_bytes
from tests.support.v1client import V1Client

SIZE = 24 * 1024 * 1024 + 5  # larger than a socket buffer: many partial sends and waits
LAYER = random_bytes(SIZE, seed=11)


def _open_fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


@pytest.mark.parametrize("sendfile", ["true", "false"])
async def test_layers_ranges_heads_and_disconnects(
    launcher: Launcher, tmp_path: Path, database_url: str, sendfile: str
) -> None:
    server = launcher.start(tmp_path / "data", database_url, env={"REGISTRYD_SENDFILE": sendfile})
    image = make_image("zero-copy", LAYER)
    path = f"/v1/images/{image.image_id}/layer"
    async with aiohttp.ClientSession(base_url=server.url) as http:
        assert await V1Client(http).push_image(image) == "pushed"
        async with http.get(path) as resp:
            assert await resp.read() == LAYER
        fds_before = await asyncio.to_thread(_open_fds, server.pid)

        # Many concurrent whole and ranged reads on kept-alive connections.
        async def ranged(start: int, end: int) -> None:
            async with http.get(path, headers={"Range": f"bytes={start}-{end}"}) as resp:
                assert resp.status == 206
                assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
                assert await resp.read() == LAYER[start : end + 1]

        async def whole() -> None:
            async with http.get(path) as resp:
                assert await resp.read() == LAYER

        await asyncio.gather(
            *(whole() for _ in range(4)),
            ranged(0, 0),
            ranged(SIZE - 1, SIZE - 1),
            ranged(1, SIZE - 2),
            ranged(7 * 1024 * 1024 + 3, 9 * 1024 * 1024),
        )
        async with http.head(path) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(SIZE)
            assert await resp.read() == b""
        async with http.get(path) as resp:  # the connection after a HEAD is still in sync
            assert await resp.read() == LAYER

        # Clients that go away mid-body, while the server is waiting for writability.
        for _ in range(8):
            resp = await http.get(path)
            await resp.content.readexactly(1024 * 1024)
            resp.close()
        await asyncio.sleep(0.5)
        async with http.get(path) as resp:
            assert await resp.read() == LAYER
    await asyncio.sleep(0.5)
    # Every duplicated socket and blob file was closed again.
    assert await asyncio.to_thread(_open_fds, server.pid) <= fds_before
    assert "Traceback" not in server.log()
    assert await asyncio.to_thread(server.stop) == 0
