"""The v1 image upload state machine (v1 spec §5.2-§5.7, §6) and its bad inputs."""

from __future__ import annotations

import io
import json

import asyncpg
import pytest

from registryd.config import Settings
from tests.conftest import Client
from tests.support.images import V1Image, make_chain, make_image, random_bytes
from tests.support.snapshot import snapshot
from tests.support.store import blob_files, upload_files
from tests.support.v1client import V1Client, chunked

LAYER = random_bytes(100_000, seed=1)


async def put_json(client: Client, image: V1Image) -> tuple[int, object]:
    resp = await client.put(f"/v1/images/{image.image_id}/json", data=image.json)
    return resp.status, await resp.json()


async def put_layer(
    client: Client, image: V1Image, layer: bytes | None = None
) -> tuple[int, object]:
    resp = await client.put(
        f"/v1/images/{image.image_id}/layer", data=image.layer if layer is None else layer
    )
    return resp.status, await resp.json()


async def put_checksum(client: Client, image_id: str, **headers: str) -> tuple[int, object]:
    resp = await client.put(f"/v1/images/{image_id}/checksum", headers=headers)
    return resp.status, await resp.json()


def payload(checksum: str) -> dict[str, str]:
    return {"X-Docker-Checksum-Payload": checksum}


async def test_upload_state_machine(client: Client) -> None:
    image = make_image("sm", LAYER)
    assert await put_json(client, image) == (200, True)
    # Uploading: every read answers 400 "being uploaded".
    for part in ("json", "layer", "ancestry"):
        resp = await client.get(f"/v1/images/{image.image_id}/{part}")
        assert resp.status == 400
        assert await resp.json() == {"error": "Image is being uploaded, retry later"}
    assert await put_layer(client, image) == (200, True)
    assert await put_checksum(client, image.image_id, **payload(image.payload_checksum)) == (
        200,
        True,
    )
    # Complete: byte-exact 409 for every write.
    assert await put_json(client, image) == (409, {"error": "Image already exists"})
    assert await put_layer(client, image) == (409, {"error": "Image already exists"})
    assert await put_checksum(client, image.image_id, **payload(image.payload_checksum)) == (
        409,
        {"error": "Cannot set this image checksum"},
    )
    resp = await client.get(f"/v1/images/{image.image_id}/json")
    assert resp.status == 200
    assert await resp.read() == image.json  # stored byte for byte
    assert resp.headers["X-Docker-Size"] == str(len(LAYER))
    assert resp.headers["X-Docker-Checksum-Payload"] == image.payload_checksum
    assert resp.headers["Cache-Control"] == "public, max-age=31536000"
    resp = await client.get(f"/v1/images/{image.image_id}/layer")
    assert await resp.read() == LAYER
    assert resp.headers["Content-Type"] == "application/octet-stream"


async def test_head_json_and_layer(client: Client) -> None:
    image = make_image("head", LAYER)
    await V1Client(client).push_image(image)
    resp = await client.head(f"/v1/images/{image.image_id}/json")
    assert resp.status == 200
    assert resp.headers["X-Docker-Size"] == str(len(LAYER))
    resp = await client.head(f"/v1/images/{image.image_id}/layer")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(LAYER))
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert await resp.read() == b""


async def test_ancestry_lists_the_image_first(client: Client) -> None:
    chain = make_chain("anc", [b"base", b"mid", b"top"])
    for image in chain:
        await V1Client(client).push_image(image)
    resp = await client.get(f"/v1/images/{chain[2].image_id}/ancestry")
    assert resp.status == 200
    assert await resp.json() == [chain[2].image_id, chain[1].image_id, chain[0].image_id]


async def test_tarsum_is_recorded_and_returned(client: Client) -> None:
    image = make_image("tarsum", LAYER)
    tarsum = "tarsum+sha256:" + "1" * 64
    await put_json(client, image)
    await put_layer(client, image)
    status, _ = await put_checksum(
        client,
        image.image_id,
        **payload(image.payload_checksum),
        **{"X-Docker-Checksum": tarsum},
    )
    assert status == 200
    resp = await client.get(f"/v1/images/{image.image_id}/json")
    assert resp.headers["X-Docker-Checksum"] == tarsum


async def test_quay_order_tarsum_before_layer(client: Client) -> None:
    """Quay's client sends the tarsum alone before the layer: kept, image still uploading."""
    image = make_image("quay", LAYER)
    await put_json(client, image)
    tarsum = "tarsum+sha256:" + "2" * 64
    assert await put_checksum(client, image.image_id, **{"X-Docker-Checksum": tarsum}) == (
        200,
        True,
    )
    assert (await client.get(f"/v1/images/{image.image_id}/json")).status == 400
    await put_layer(client, image)
    assert await put_checksum(client, image.image_id, **payload(image.payload_checksum)) == (
        200,
        True,
    )
    resp = await client.get(f"/v1/images/{image.image_id}/json")
    assert resp.headers["X-Docker-Checksum"] == tarsum


async def test_tarsum_alone_after_the_layer_cannot_complete(client: Client) -> None:
    image = make_image("tarsum-late", LAYER)
    await put_json(client, image)
    await put_layer(client, image)
    status, body = await put_checksum(
        client, image.image_id, **{"X-Docker-Checksum": "tarsum+sha256:" + "3" * 64}
    )
    assert status == 412
    assert "X-Docker-Checksum-Payload not set" in body["error"]  # type: ignore[index]
    assert (await client.get(f"/v1/images/{image.image_id}/json")).status == 400


async def test_checksum_mismatch_leaves_the_image_uploading_and_retry_works(
    client: Client,
) -> None:
    image = make_image("mismatch", LAYER)
    await put_json(client, image)
    await put_layer(client, image, layer=b"corrupted in transit")
    assert await put_checksum(client, image.image_id, **payload(image.payload_checksum)) == (
        400,
        {"error": "Checksum mismatch"},
    )
    assert (await client.get(f"/v1/images/{image.image_id}/layer")).status == 400
    # docker retries json + layer + checksum.
    assert await put_json(client, image) == (200, True)
    assert await put_layer(client, image) == (200, True)
    assert await put_checksum(client, image.image_id, **payload(image.payload_checksum)) == (
        200,
        True,
    )


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({}, 400, "Missing Image's checksum"),
        ({"X-Docker-Checksum-Payload": ""}, 400, "Missing Image's checksum"),
        ({"X-Docker-Checksum-Payload": "sha256:" + "0" * 64}, 400, "Layer not uploaded"),
    ],
)
async def test_checksum_without_a_usable_value(
    client: Client, headers: dict[str, str], status: int, error: str
) -> None:
    image = make_image("nochecksum", LAYER)
    await put_json(client, image)
    assert await put_checksum(client, image.image_id, **headers) == (status, {"error": error})


async def test_retried_json_discards_the_uploaded_layer(client: Client) -> None:
    image = make_image("retry", LAYER)
    await put_json(client, image)
    await put_layer(client, image)
    await put_json(client, image)
    assert await put_checksum(client, image.image_id, **payload(image.payload_checksum)) == (
        400,
        {"error": "Layer not uploaded"},
    )


async def test_payload_checksum_covers_the_exact_json_bytes(client: Client) -> None:
    """Re-serialising the JSON would change the checksum; we must hash what was sent."""
    iid = make_image("spacing", b"").image_id
    spaced = (f'{{ "id" :  "{iid}" ,\n "comment": "keep my spaces" }}').encode()
    image = V1Image(iid, spaced, LAYER, None)
    assert await V1Client(client).push_image(image) == "pushed"
    assert await (await client.get(f"/v1/images/{iid}/json")).read() == spaced


async def test_empty_layer(client: Client) -> None:
    image = make_image("empty", b"")
    assert await V1Client(client).push_image(image) == "pushed"
    resp = await client.get(f"/v1/images/{image.image_id}/layer")
    assert resp.status == 200
    assert await resp.read() == b""
    assert (await client.get(f"/v1/images/{image.image_id}/json")).headers["X-Docker-Size"] == "0"


async def test_chunked_and_content_length_layers_are_the_same_blob(
    client: Client, settings: Settings
) -> None:
    chunked_image = make_image("chunked", LAYER)
    sized_image = make_image("sized", LAYER)
    await put_json(client, chunked_image)
    resp = await client.put(f"/v1/images/{chunked_image.image_id}/layer", data=chunked(LAYER, 7000))
    assert resp.status == 200
    await put_json(client, sized_image)
    assert await put_layer(client, sized_image) == (200, True)
    for image in (chunked_image, sized_image):
        assert (await put_checksum(client, image.image_id, **payload(image.payload_checksum)))[
            0
        ] == 200
    assert len(blob_files(settings)) == 1  # identical layers are stored once


async def test_unknown_image(client: Client) -> None:
    missing = "f" * 64
    for method, part in [("GET", "json"), ("GET", "layer"), ("GET", "ancestry"), ("HEAD", "json")]:
        resp = await client.request(method, f"/v1/images/{missing}/{part}")
        assert resp.status == 404
    assert await put_layer(client, make_image("never-declared", b"")) == (
        404,
        {"error": "Image not found"},
    )
    assert await put_checksum(client, missing, **payload("sha256:" + "0" * 64)) == (
        404,
        {"error": "Image not found"},
    )


BAD_IDS = ["A" * 64, "a" * 63, "a" * 16, "..%2F..%2Fetc%2Fpasswd", "g" * 64, "%2E%2E"]


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_bad_image_ids_are_404_and_store_nothing(
    client: Client, db: asyncpg.Connection, settings: Settings, bad_id: str
) -> None:
    before = await snapshot(db, settings)
    for method, part, body in [
        ("GET", "json", None),
        ("GET", "layer", None),
        ("GET", "ancestry", None),
        ("PUT", "json", json.dumps({"id": bad_id}).encode()),
        ("PUT", "layer", b"bytes"),
        ("PUT", "checksum", None),
    ]:
        resp = await client.request(method, f"/v1/images/{bad_id}/{part}", data=body)
        assert resp.status == 404, (method, part)
        assert await resp.json() in ({"error": "Invalid image ID"}, {"error": "Not Found"})
    assert await snapshot(db, settings) == before


GOOD_ID = make_image("bad-json", b"").image_id
OTHER_ID = make_image("other", b"").image_id


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"not json", 400, "Invalid JSON"),
        (b"\xff\xfe", 400, "Invalid JSON"),
        (b"", 400, "Invalid JSON"),
        (b'["a", "list"]', 400, "Invalid JSON"),
        (b'"a string"', 400, "Invalid JSON"),
        (b'{"parent": null}', 400, "Missing key `id' in JSON"),
        (json.dumps({"id": OTHER_ID}).encode(), 400, "JSON data contains invalid id"),
        (
            json.dumps({"id": GOOD_ID, "parent": OTHER_ID}).encode(),
            400,
            "Image depends on a non existing parent",
        ),
        (
            json.dumps({"id": GOOD_ID, "parent": "../../etc"}).encode(),
            400,
            "Image depends on a non existing parent",
        ),
        (
            json.dumps({"id": GOOD_ID, "parent": 7}).encode(),
            400,
            "JSON key `parent' must be an image id",
        ),
        (
            json.dumps({"id": GOOD_ID, "parent": GOOD_ID}).encode(),
            400,
            "Image cannot be its own parent",
        ),
    ],
)
async def test_bad_image_json_stores_nothing(
    client: Client,
    db: asyncpg.Connection,
    settings: Settings,
    body: bytes,
    status: int,
    error: str,
) -> None:
    before = await snapshot(db, settings)
    resp = await client.put(f"/v1/images/{GOOD_ID}/json", data=body)
    assert resp.status == status
    assert await resp.json() == {"error": error}
    assert await snapshot(db, settings) == before


async def test_oversized_json_is_413_and_stores_nothing(
    client: Client, db: asyncpg.Connection, settings: Settings
) -> None:
    before = await snapshot(db, settings)
    padding = "x" * settings.max_json_bytes
    resp = await client.put(
        f"/v1/images/{GOOD_ID}/json", data=json.dumps({"id": GOOD_ID, "pad": padding})
    )
    assert resp.status == 413
    assert "larger than" in (await resp.json())["error"]
    # The same without Content-Length: the limit holds while streaming too.
    resp = await client.put(
        f"/v1/images/{GOOD_ID}/json",
        data=chunked(json.dumps({"id": GOOD_ID, "pad": padding}).encode(), 4096),
    )
    assert resp.status == 413
    assert await snapshot(db, settings) == before


@pytest.mark.parametrize("use_chunked", [False, True])
async def test_oversized_layer_is_413_and_stores_nothing(
    client: Client, db: asyncpg.Connection, settings: Settings, use_chunked: bool
) -> None:
    image = make_image("huge", b"")
    await put_json(client, image)
    before = await snapshot(db, settings)
    too_big = b"\0" * (settings.max_layer_bytes + 1)
    resp = await client.put(
        f"/v1/images/{image.image_id}/layer",
        data=chunked(too_big, 1024 * 1024) if use_chunked else io.BytesIO(too_big),
    )
    assert resp.status == 413
    assert await snapshot(db, settings) == before
    assert upload_files(settings) == []
