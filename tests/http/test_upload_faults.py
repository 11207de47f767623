"""Faults during uploads lose nothing: disconnects, races, and re-sent JSON."""

from __future__ import annotations

import asyncio
import io
import json

import asyncpg
import pytest

from registryd.config import Settings
from tests.conftest import Client
from tests.support.images import make_image, random_bytes
from tests.support.polling import eventually
from tests.support.store import blob_files, upload_files
from tests.support.v1client import V1Client

LAYER = random_bytes(2 * 1024 * 1024, seed=3)


async def send_partial_put(
    client: Client, settings: Settings, path: str, headers: dict[str, str], body: bytes
) -> None:
    """Send the request line, headers and part of a body, then drop the connection once the
    server streams it to a temp file."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = f"PUT {path} HTTP/1.1\r\nHost: {client.host}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
    await eventually(lambda: upload_files(settings) != [], "the server streams to a temp file")
    writer.transport.abort()  # a hard reset, as when a client dies
    del reader


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_disconnect_mid_layer_keeps_the_image_uploading_and_a_retry_works(
    client: Client, db: asyncpg.Connection, settings: Settings, framing: str
) -> None:
    image = make_image("disconnect-" + framing, LAYER)
    await client.put(f"/v1/images/{image.image_id}/json", data=image.json)
    path = f"/v1/images/{image.image_id}/layer"
    half = LAYER[: len(LAYER) // 2]
    if framing == "content-length":
        await send_partial_put(client, settings, path, {"Content-Length": str(len(LAYER))}, half)
    else:
        body = f"{len(half):x}\r\n".encode() + half + b"\r\n"  # no terminating chunk
        await send_partial_put(client, settings, path, {"Transfer-Encoding": "chunked"}, body)

    await eventually(lambda: upload_files(settings) == [], "the temp file is removed")
    assert blob_files(settings) == []
    row = await db.fetchrow("SELECT state, layer_digest FROM v1_images")
    assert row is not None
    assert (row["state"], row["layer_digest"]) == ("uploading", None)
    assert (await client.get(f"/v1/images/{image.image_id}/json")).status == 400

    # docker retries the whole image; it succeeds and stores one blob.
    await client.put(f"/v1/images/{image.image_id}/json", data=image.json)
    assert (await client.put(path, data=io.BytesIO(LAYER))).status == 200
    resp = await client.put(
        f"/v1/images/{image.image_id}/checksum",
        headers={"X-Docker-Checksum-Payload": image.payload_checksum},
    )
    assert resp.status == 200
    assert await (await client.get(path)).read() == LAYER
    assert len(blob_files(settings)) == 1


async def test_same_layer_pushed_concurrently_is_stored_once(
    client: Client, settings: Settings
) -> None:
    images = [make_image(f"concurrent-{i}", LAYER) for i in range(4)]
    outcomes = await asyncio.gather(*(V1Client(client).push_image(i) for i in images))
    assert outcomes == ["pushed"] * 4
    assert len(blob_files(settings)) == 1
    assert upload_files(settings) == []
    for image in images:
        assert await (await client.get(f"/v1/images/{image.image_id}/layer")).read() == LAYER


async def test_same_image_pushed_concurrently_completes_once(client: Client) -> None:
    image = make_image("same-image", LAYER)
    outcomes = await asyncio.gather(
        *(V1Client(client).push_image(image) for _ in range(3)), return_exceptions=True
    )
    # Whoever completes first wins; the others see "exists" or a refused write, never a 500.
    assert "pushed" in outcomes
    for outcome in outcomes:
        assert outcome in ("pushed", "exists") or "Internal server error" not in str(outcome)
    resp = await client.get(f"/v1/images/{image.image_id}/layer")
    assert await resp.read() == LAYER


async def test_json_resent_while_the_layer_streams_voids_that_layer(
    client: Client, db: asyncpg.Connection
) -> None:
    image = make_image("resent", LAYER)
    await client.put(f"/v1/images/{image.image_id}/json", data=image.json)
    started = asyncio.Event()

    async def slow_body() -> object:
        yield LAYER[:1024]
        started.set()
        await asyncio.sleep(0.5)
        yield LAYER[1024:]

    upload = asyncio.create_task(client.put(f"/v1/images/{image.image_id}/layer", data=slow_body()))
    await started.wait()
    await client.put(f"/v1/images/{image.image_id}/json", data=image.json)  # a retry
    resp = await upload
    assert resp.status == 409
    assert "changed" in (await resp.json())["error"]
    assert await db.fetchval("SELECT layer_digest FROM v1_images") is None


async def test_checksum_header_with_wrong_case_hex_is_a_mismatch(client: Client) -> None:
    image = make_image("case", LAYER)
    await client.put(f"/v1/images/{image.image_id}/json", data=image.json)
    await client.put(f"/v1/images/{image.image_id}/layer", data=io.BytesIO(LAYER))
    resp = await client.put(
        f"/v1/images/{image.image_id}/checksum",
        headers={"X-Docker-Checksum-Payload": image.payload_checksum.upper()},
    )
    assert resp.status == 400
    assert json.loads(await resp.read()) == {"error": "Checksum mismatch"}
