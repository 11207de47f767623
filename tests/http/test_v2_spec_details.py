"""Spec details the OCI conformance suites check, tested on their own (issue: conformance)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Client
from tests.support.content import sha256
from tests.support.images import random_bytes
from tests.support.v2client import V2Client, image_manifest

DATA = random_bytes(4000, seed=5)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("reference", ["sha256:totallywrong", "-not-a-tag", "a" * 200, "x:y"])
async def test_manifest_reference_that_can_name_nothing_is_unknown(
    client: Client, method: str, reference: str
) -> None:
    await V2Client(client).push_image("alice/app", "latest", [DATA])
    resp = await client.request(method, f"/v2/alice/app/manifests/{reference}")
    assert resp.status == 404
    if method == "GET":
        body = await resp.json()
        assert body["errors"][0]["code"] == "MANIFEST_UNKNOWN"


async def test_put_of_an_invalid_tag_is_still_tag_invalid(client: Client) -> None:
    v2 = V2Client(client)
    config = b"{}"
    await v2.push_blob("alice/app", config)
    status, body, _ = await v2.push_manifest("alice/app", "-bad", image_manifest(config, []))
    assert status == 400
    assert json.loads(body)["errors"][0]["code"] == "TAG_INVALID"


async def test_closing_put_at_the_wrong_offset_is_416_and_keeps_the_session(
    client: Client,
) -> None:
    resp = await client.post("/v2/alice/app/blobs/uploads/")
    location = resp.headers["Location"]
    resp = await client.patch(
        location, data=DATA[:1000], headers={"Content-Range": "0-999", "Content-Length": "1000"}
    )
    assert resp.status == 202
    location = resp.headers["Location"]
    digest = sha256(DATA)
    # The final chunk claims to start at 2000, but the upload ends at 1000.
    resp = await client.put(
        f"{location}?digest={digest}",
        data=DATA[2000:],
        headers={"Content-Range": f"2000-{len(DATA) - 1}"},
    )
    assert resp.status == 416
    assert resp.headers["Range"] == "0-999"
    assert (await resp.json())["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    # Nothing was appended and the session lives on: the client resumes where it ended.
    resp = await client.get(location)
    assert resp.status == 204
    assert resp.headers["Range"] == "0-999"
    resp = await client.put(
        f"{location}?digest={digest}",
        data=DATA[1000:],
        headers={"Content-Range": f"1000-{len(DATA) - 1}"},
    )
    assert resp.status == 201, await resp.text()
    resp = await client.get(f"/v2/alice/app/blobs/{digest}")
    assert await resp.read() == DATA


async def test_manifest_put_by_digest_with_tag_parameters(client: Client) -> None:
    v2 = V2Client(client)
    config = b'{"os":"linux"}'
    await v2.push_blob("alice/app", config)
    await v2.push_blob("alice/app", DATA)
    manifest = image_manifest(config, [DATA])
    digest = sha256(manifest)
    resp = await client.put(
        f"/v2/alice/app/manifests/{digest}?tag=one&tag=two&tag=one",
        data=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert resp.status == 201, await resp.text()
    assert resp.headers.getall("OCI-Tag") == ["one", "two"]
    for tag in ("one", "two"):
        resp = await client.get(f"/v2/alice/app/manifests/{tag}")
        assert resp.status == 200
        assert resp.headers["Docker-Content-Digest"] == digest
        assert await resp.read() == manifest
    resp = await client.get("/v2/alice/app/tags/list")
    assert (await resp.json())["tags"] == ["one", "two"]


async def test_an_invalid_tag_parameter_stores_nothing(client: Client) -> None:
    v2 = V2Client(client)
    config = b'{"os":"linux"}'
    await v2.push_blob("alice/app", config)
    manifest = image_manifest(config, [])
    digest = sha256(manifest)
    resp = await client.put(
        f"/v2/alice/app/manifests/{digest}?tag=good&tag=-bad",
        data=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert resp.status == 400
    assert (await resp.json())["errors"][0]["code"] == "TAG_INVALID"
    resp = await client.get(f"/v2/alice/app/manifests/{digest}")
    assert resp.status == 404


@pytest.mark.parametrize("header", ["bytes=500-0", "bytes=9-3"])
async def test_range_ending_before_it_starts_is_416(client: Client, header: str) -> None:
    digest = await V2Client(client).push_blob("alice/app", DATA)
    resp = await client.get(f"/v2/alice/app/blobs/{digest}", headers={"Range": header})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{len(DATA)}"
