"""Layer GET/HEAD: whole, ranged, resumed and conditional (v1 spec §5.6, §8)."""

from __future__ import annotations

import dataclasses

import pytest

from registryd.config import Settings
from tests.conftest import Client
from tests.support.images import V1Image, make_image, random_bytes
from tests.support.v1client import V1Client

SIZE = 3 * 1024 * 1024 + 17  # several read chunks and an odd tail
LAYER = random_bytes(SIZE, seed=2)


@pytest.fixture(params=["sendfile", "copy"])
def settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Every test here runs with zero-copy sendfile and with the copying fallback (as over TLS)."""
    return dataclasses.replace(settings, sendfile=request.param == "sendfile")


@pytest.fixture
async def pushed(client: Client) -> V1Image:
    """A complete image."""
    image = make_image("download", LAYER)
    assert await V1Client(client).push_image(image) == "pushed"
    return image


def layer_path(image: V1Image) -> str:
    return f"/v1/images/{image.image_id}/layer"


async def test_whole_layer(client: Client, pushed: V1Image) -> None:
    resp = await client.get(layer_path(pushed))
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(SIZE)
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["ETag"].startswith('"sha256:')
    assert await resp.read() == LAYER


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=100-199", 100, 199),
        ("bytes=1048576-", 1048576, SIZE - 1),
        (f"bytes=1000-{SIZE}", 1000, SIZE - 1),  # docker's resume: end = size
        ("bytes=-10", SIZE - 10, SIZE - 1),
    ],
)
async def test_ranges(client: Client, pushed: V1Image, header: str, start: int, end: int) -> None:
    resp = await client.get(layer_path(pushed), headers={"Range": header})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
    assert resp.headers["Content-Length"] == str(end - start + 1)
    assert await resp.read() == LAYER[start : end + 1]


@pytest.mark.parametrize("header", [f"bytes={SIZE}-{SIZE}", f"bytes={SIZE + 5}-"])
async def test_range_past_the_end_is_416(client: Client, pushed: V1Image, header: str) -> None:
    resp = await client.get(layer_path(pushed), headers={"Range": header})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{SIZE}"
    assert resp.headers["Content-Length"] == "0"


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", "lines=1-2", "bytes=x-y"])
async def test_unusable_range_serves_everything(
    client: Client, pushed: V1Image, header: str
) -> None:
    resp = await client.get(layer_path(pushed), headers={"Range": header})
    assert resp.status == 200
    assert await resp.read() == LAYER


async def test_resume_after_a_broken_download(client: Client, pushed: V1Image) -> None:
    """What docker's resumable reader does: read part, drop, re-request the rest."""
    received = bytearray()
    resp = await client.get(layer_path(pushed))
    size = int(resp.headers["Content-Length"])
    received += await resp.content.readexactly(1_000_000)
    resp.close()
    while len(received) < size:
        resp = await client.get(
            layer_path(pushed), headers={"Range": f"bytes={len(received)}-{size}"}
        )
        assert resp.status == 206
        received += await resp.read()
    assert bytes(received) == LAYER
    # Resuming at the very end: 416 with an empty body is EOF for docker.
    resp = await client.get(layer_path(pushed), headers={"Range": f"bytes={size}-{size}"})
    assert resp.status == 416
    assert await resp.read() == b""


@pytest.mark.parametrize("part", ["json", "layer", "ancestry"])
async def test_conditional_reads_of_immutable_content_are_304(
    client: Client, pushed: V1Image, part: str
) -> None:
    resp = await client.get(
        f"/v1/images/{pushed.image_id}/{part}",
        headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
    )
    assert resp.status == 304
    assert resp.headers["Cache-Control"] == "public, max-age=31536000"


async def test_conditional_read_of_a_missing_image_is_still_404(client: Client) -> None:
    resp = await client.get(
        f"/v1/images/{'e' * 64}/layer",
        headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
    )
    assert resp.status == 404
