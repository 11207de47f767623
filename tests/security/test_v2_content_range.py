"""Attack: chunks with malformed, contradictory or out-of-order ``Content-Range``.

A malformed header is a 400; an out-of-order chunk a 416 that says where the
session ends (``Range``), so the client can resume; a declared total is
honoured: no chunk past it, no commit of a different size.
"""

from __future__ import annotations

import pytest

from tests.conftest import Client
from tests.support.content import sha256

DATA = bytes(range(256)) * 40  # 10240 bytes


async def _start(client: Client) -> str:
    resp = await client.post("/v2/alice/app/blobs/uploads/")
    assert resp.status == 202
    return resp.headers["Location"]


async def _code(resp: object) -> str:
    body = await resp.json()  # type: ignore[attr-defined]
    return str(body["errors"][0]["code"])


async def test_out_of_order_chunk_is_416_with_range(client: Client) -> None:
    location = await _start(client)
    resp = await client.patch(location, data=DATA[:100], headers={"Content-Range": "0-99"})
    assert resp.status == 202
    resp = await client.patch(location, data=DATA[:100], headers={"Content-Range": "200-299"})
    assert resp.status == 416
    assert resp.headers["Range"] == "0-99"
    assert resp.headers["Location"] == location
    assert await _code(resp) == "BLOB_UPLOAD_INVALID"


@pytest.mark.parametrize("header", ["bytes=0-", "abc", "5-2", "0-99/50", "-1-5", "0-99/x"])
async def test_malformed_content_range_is_400(client: Client, header: str) -> None:
    location = await _start(client)
    resp = await client.patch(location, data=DATA[:100], headers={"Content-Range": header})
    assert resp.status == 400, header
    assert await _code(resp) == "BLOB_UPLOAD_INVALID"
    resp = await client.get(location)
    assert resp.headers["Range"] == "0-0"  # nothing was written


async def test_content_range_total_is_honoured(client: Client) -> None:
    location = await _start(client)
    resp = await client.patch(location, data=DATA[:100], headers={"Content-Range": "0-99/200"})
    assert resp.status == 202
    # Another total for the same blob.
    resp = await client.patch(
        location, data=DATA[100:150], headers={"Content-Range": "100-149/300"}
    )
    assert resp.status == 400
    # Bytes past the declared total, in a streamed chunk.
    resp = await client.patch(location, data=DATA[100:300])
    assert resp.status == 400
    assert await _code(resp) == "SIZE_INVALID"
    # Completing short of the total.
    resp = await client.put(f"{location}?digest={sha256(DATA[:150])}", data=DATA[100:150])
    assert resp.status == 400
    assert await _code(resp) == "SIZE_INVALID"
    # A failed final chunk leaves no trace: the session is still at 100 bytes.
    assert (await client.get(location)).headers["Range"] == "0-99"
    resp = await client.put(f"{location}?digest={sha256(DATA[:200])}", data=DATA[100:200])
    assert resp.status == 201
