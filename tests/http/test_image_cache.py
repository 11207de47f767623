"""Complete images are cached per process: never an incomplete one, never a stale tag."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import asyncpg

from registryd.app import OPEN_FILES_SWEEP_SECONDS
from registryd.config import Settings
from registryd.domain.image_cache import ImageCache
from registryd.storage import paths
from tests.conftest import Client
from tests.support.images import make_image, random_bytes
from tests.support.v1client import V1Client

LAYER = random_bytes(200_000, seed=7)


async def test_reads_while_uploading_never_see_a_cached_image(client: Client) -> None:
    image = make_image("cache-uploading", LAYER)
    layer_path = f"/v1/images/{image.image_id}/layer"
    assert (await client.put(f"/v1/images/{image.image_id}/json", data=image.json)).status == 200
    for _ in range(3):  # repeated reads of an uploading image stay 400 at every step
        assert (await client.get(layer_path)).status == 400
    assert (await client.put(layer_path, data=LAYER)).status == 200
    assert (await client.get(layer_path)).status == 400
    assert (await client.get(f"/v1/images/{image.image_id}/json")).status == 400
    resp = await client.put(
        f"/v1/images/{image.image_id}/checksum",
        headers={"X-Docker-Checksum-Payload": image.payload_checksum},
    )
    assert resp.status == 200
    for _ in range(3):  # the first read fills the cache, the next ones come from it
        resp = await client.get(layer_path)
        assert resp.status == 200
        assert await resp.read() == LAYER
        resp = await client.get(f"/v1/images/{image.image_id}/json")
        assert await resp.read() == image.json
        assert resp.headers["X-Docker-Checksum-Payload"] == image.payload_checksum


async def test_a_retried_upload_is_served_with_its_final_layer(client: Client) -> None:
    image = make_image("cache-retry", LAYER)
    other = random_bytes(1000, seed=8)
    assert (await client.put(f"/v1/images/{image.image_id}/json", data=image.json)).status == 200
    assert (await client.put(f"/v1/images/{image.image_id}/layer", data=other)).status == 200
    assert (await client.get(f"/v1/images/{image.image_id}/layer")).status == 400
    # The client starts over (PUT json resets the layer) and pushes the real one.
    assert await V1Client(client).push_image(image) == "pushed"
    resp = await client.get(f"/v1/images/{image.image_id}/layer")
    assert await resp.read() == LAYER


async def test_tag_reads_follow_deletes_and_moves(client: Client) -> None:
    first, second = make_image("cache-tag-1", LAYER), make_image("cache-tag-2", b"two")
    v1 = V1Client(client)
    await v1.push("alice/cached", "latest", [first])
    assert (await v1.pull("alice/cached", "latest"))[0][2] == LAYER
    await v1.push("alice/cached", "latest", [second])
    assert (await v1.pull("alice/cached", "latest"))[0][2] == b"two"
    resp = await client.delete("/v1/repositories/alice/cached/tags/latest")
    assert resp.status == 200
    resp = await client.get("/v1/repositories/alice/cached/tags/latest")
    assert resp.status == 404
    resp = await client.get("/v1/repositories/alice/cached/tags")
    assert json.loads(await resp.read()) == {}
    # The images themselves stay (v1 images are global): still served, from the cache or not.
    resp = await client.get(f"/v1/images/{first.image_id}/layer")
    assert await resp.read() == LAYER


async def test_a_vanished_layer_is_404_and_not_remembered(
    client: Client, settings: Settings, db: asyncpg.Connection
) -> None:
    image = make_image("cache-vanished", LAYER)
    assert await V1Client(client).push_image(image) == "pushed"
    layer_path = f"/v1/images/{image.image_id}/layer"
    assert (await client.get(layer_path)).status == 200  # cached now
    digest = await db.fetchval(
        "SELECT layer_digest FROM v1_images WHERE image_id = $1", image.image_id
    )
    blob = paths.blobs_dir(settings.storage_root) / "sha256" / digest[7:9] / digest[7:]
    await asyncio.to_thread(blob.unlink)
    resp = await client.get(layer_path)
    assert resp.status == 404
    assert await resp.json() == {"error": "Layer not found"}
    # Whatever removes blobs also removes rows; the next read must ask the database.
    await db.execute("DELETE FROM v1_images WHERE image_id = $1", image.image_id)
    assert (await client.get(layer_path)).status == 404
    assert (await client.get(f"/v1/images/{image.image_id}/json")).status == 404


def test_cache_is_bounded_and_refuses_incomplete_images() -> None:
    from registryd.db.v1_image_queries import ImageRow

    def row(n: int, state: str = "complete", json_bytes: int = 100) -> ImageRow:
        return ImageRow(
            image_id=f"{n:064x}",  # type: ignore[arg-type]
            json=b"x" * json_bytes,
            parent_id=None,
            ancestry=[],
            state=state,
            json_generation=1,
            layer_digest=None,
            layer_size_bytes=0,
            checksum_payload="sha256:" + "0" * 64,
            checksum_tarsum=None,
            updated_at=None,  # type: ignore[arg-type]
        )

    cache = ImageCache(max_entries=3, max_json_bytes=16 * 1000)
    cache.put(row(0, state="uploading"))
    assert cache.get(row(0).image_id) is None
    for n in range(1, 5):
        cache.put(row(n))
    assert len(cache) == 3
    assert cache.get(row(1).image_id) is None  # least recently used went first
    cache.get(row(2).image_id)
    cache.put(row(5))
    assert cache.get(row(2).image_id) is not None
    assert cache.get(row(3).image_id) is None
    cache.put(row(6, json_bytes=2000))  # over a sixteenth of the budget: not kept
    assert cache.get(row(6).image_id) is None
    for n in range(7, 10):
        cache.put(row(n, json_bytes=900))
    assert len(cache) == 3


def _open_paths() -> set[str]:
    """What this process (the in-process server) has open, as /proc shows it."""
    found = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            found.add(str(fd.readlink()))
    return found


async def test_removed_layer_file_is_closed_soon_so_its_space_is_freed(
    client: Client, settings: Settings, db: asyncpg.Connection
) -> None:
    image = make_image("cache-freed", LAYER)
    assert await V1Client(client).push_image(image) == "pushed"
    assert (await client.get(f"/v1/images/{image.image_id}/layer")).status == 200
    digest = await db.fetchval(
        "SELECT layer_digest FROM v1_images WHERE image_id = $1", image.image_id
    )
    blob = paths.blobs_dir(settings.storage_root) / "sha256" / digest[7:9] / digest[7:]
    assert str(blob) in await asyncio.to_thread(_open_paths)  # kept open for the next GET
    await asyncio.to_thread(blob.unlink)  # what a garbage collector would do
    await asyncio.sleep(OPEN_FILES_SWEEP_SECONDS * 1.5)
    assert not {p for p in await asyncio.to_thread(_open_paths) if p.startswith(str(blob))}
