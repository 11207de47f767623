"""Attack (fault): fill the store's disk. A real 4 MiB tmpfs holds the store.

A push that does not fit answers 507 (v1) or a spec error naming the storage
(v2, 507), leaves no partial file and loses nothing of the session; ``/readyz``
reports a store below ``min_free_bytes`` as not ready.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from tests.conftest import Client
from tests.support.content import sha256
from tests.support.images import make_image, random_bytes
from tests.support.store import blob_files, upload_files
from tests.support.v1client import chunked
from tests.support.v2client import V2Client

MIB = 1024 * 1024
BIG = random_bytes(8 * MIB, 10)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def settings(settings: Settings, small_disk: Path) -> Settings:
    return dataclasses.replace(settings, data_dir=small_disk / "data", min_free_bytes=MIB)


@pytest.fixture
async def client(settings: Settings, aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_app(settings))


async def test_v1_layer_on_a_full_disk_is_507(client: Client, settings: Settings) -> None:
    image = make_image("full", BIG)
    assert (await client.put(f"/v1/images/{image.image_id}/json", data=image.json)).status == 200
    resp = await client.put(f"/v1/images/{image.image_id}/layer", data=chunked(BIG))
    assert resp.status == 507
    assert "storage" in (await resp.json())["error"]
    assert blob_files(settings) == []
    assert upload_files(settings) == []


async def test_v2_upload_on_a_full_disk_is_a_spec_error_and_keeps_the_session(
    client: Client, settings: Settings
) -> None:
    resp = await client.post("/v2/alice/app/blobs/uploads/")
    location = resp.headers["Location"]
    resp = await client.patch(location, data=chunked(BIG))
    assert resp.status == 507
    error = (await resp.json())["errors"][0]
    assert error["code"] == "BLOB_UPLOAD_INVALID"
    assert "storage" in error["message"]
    resp = await client.get(location)
    assert resp.headers["Range"] == "0-0"  # the failed chunk left no trace
    small = b"fits"
    resp = await client.put(f"{location}?digest={sha256(small)}", data=small)
    assert resp.status == 201

    resp = await client.post(
        f"/v2/alice/app/blobs/uploads/?digest={sha256(BIG)}", data=chunked(BIG)
    )
    assert resp.status == 507
    assert (await resp.json())["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    assert len(upload_files(settings)) == 0
    assert await V2Client(client).push_blob("alice/app", b"still works") is not None


async def test_readiness_reports_a_store_below_min_free_bytes(
    client: Client, settings: Settings
) -> None:
    resp = await client.get("/readyz")
    assert resp.status == 200
    filler = settings.data_dir / "filler"
    filler.write_bytes(b"\0" * (3 * MIB + MIB // 2))  # someone else's files on the volume
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert "min_free_bytes" in (await resp.json())["checks"]["storage"]
    filler.unlink()
    assert (await client.get("/readyz")).status == 200
