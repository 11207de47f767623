"""A collected v1 image leaves every process's cache of complete images within a second.

Two servers on one database (two replicas, as in production) each hold the image in
their cache; a collection elsewhere deletes it, and both answer 404 at once instead
of serving its JSON, ancestry and layer from memory until they restart.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import asyncpg
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from registryd.db.v1_image_queries import ImageRow
from registryd.digest import Digest
from registryd.domain.image_cache import ImageCache
from registryd.domain.services import Services
from registryd.gc.image_notices import follow_collected_images
from registryd.gc.scrub import scrub
from registryd.keys import SERVICES
from registryd.names import parse_image_id
from registryd.storage import paths
from tests.conftest import Client
from tests.gc.conftest import age_everything, collect
from tests.process.conftest import Launcher
from tests.support.images import make_image, random_bytes
from tests.support.v1client import V1Client

IMAGE = make_image("gc-cached", random_bytes(5000, 401))
KEPT = make_image("gc-cached-kept", random_bytes(5000, 402))


async def cache_on(cache: ImageCache, on: bool = True) -> None:
    """Wait (bounded) for the listener to enable (or disable) the cache."""
    for _ in range(200):
        if cache.enabled == on:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the v1 image cache never became {'on' if on else 'off'}")


async def statuses(
    v1: V1Client, image_id: str, parts: tuple[str, ...] = ("json", "ancestry", "layer")
) -> tuple[int, ...]:
    out = []
    for part in parts:
        status, _, _ = await v1.call("GET", f"/v1/images/{image_id}/{part}")
        out.append(status)
    return tuple(out)


async def test_a_collected_image_is_404_on_every_replica_within_a_second(
    client: Client,
    settings: Settings,
    aiohttp_client: AiohttpClient,
    svc: Services,
    db: asyncpg.Connection,
) -> None:
    other = await aiohttp_client(create_app(settings))  # a second replica
    replicas = [V1Client(client), V1Client(other)]
    caches = [client.app[SERVICES].images, other.app[SERVICES].images]
    for cache in caches:
        await cache_on(cache)
    assert await replicas[0].push_image(IMAGE) == "pushed"  # neither tagged nor declared
    await replicas[0].push("alice/kept", "latest", [KEPT])
    await age_everything(db)  # (an UPDATE of complete images: they are forgotten too)
    for v1, cache in zip(replicas, caches, strict=True):
        for image in (IMAGE, KEPT):
            assert await statuses(v1, image.image_id) == (200, 200, 200)
            assert cache.get(parse_image_id(image.image_id)) is not None  # served from memory

    assert (await collect(svc)).v1_images == [IMAGE.image_id]
    collected = time.monotonic()
    for v1, cache in zip(replicas, caches, strict=True):
        # Not the layer first: a GET of a layer whose file is gone forgets the image anyway.
        while await statuses(v1, IMAGE.image_id, ("json", "ancestry")) != (404, 404):
            assert time.monotonic() - collected < 1.0, "still served from a cache"
            await asyncio.sleep(0.02)
        assert cache.get(parse_image_id(IMAGE.image_id)) is None
        assert await statuses(v1, IMAGE.image_id) == (404, 404, 404)
        # Only what was collected is forgotten.
        assert cache.get(parse_image_id(KEPT.image_id)) is not None
        assert await statuses(v1, KEPT.image_id) == (200, 200, 200)


async def test_the_cache_is_off_while_nobody_tells_it_of_collections(settings: Settings) -> None:
    cache = ImageCache()
    follower = asyncio.create_task(follow_collected_images(cache, None))  # no LISTEN possible
    await follower
    assert not cache.enabled

    # A database that does not answer: off, and still off while it retries.
    follower = asyncio.create_task(
        follow_collected_images(cache, "postgresql://nobody@127.0.0.1:9/none")
    )
    await asyncio.sleep(0.3)
    assert not cache.enabled
    follower.cancel()
    await asyncio.gather(follower, return_exceptions=True)

    assert settings.database_url is not None
    follower = asyncio.create_task(follow_collected_images(cache, settings.database_url))
    await cache_on(cache)
    # The listening connection dies (a database restart, a proxy closing it): off at once,
    # then on again, empty, once it listens again.
    cache.put(complete_row(IMAGE.image_id))
    db = await asyncpg.connect(settings.database_url)
    try:
        killed = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN %registryd_v1_images%'"
        )
    finally:
        await db.close()
    assert killed == 1
    await cache_on(cache, False)
    await cache_on(cache)
    assert cache.get(parse_image_id(IMAGE.image_id)) is None
    follower.cancel()
    await asyncio.gather(follower, return_exceptions=True)
    assert not cache.enabled  # a process that stops listening stops trusting its cache


def complete_row(image_id: str) -> ImageRow:
    return ImageRow(
        image_id=parse_image_id(image_id),
        json=b"{}",
        parent_id=None,
        ancestry=[],
        state="complete",
        json_generation=1,
        layer_digest=None,
        layer_size_bytes=0,
        checksum_payload="sha256:" + "0" * 64,
        checksum_tarsum=None,
        updated_at=datetime.now(UTC),
    )


def test_a_read_that_began_before_a_collection_does_not_store_its_answer() -> None:
    cache = ImageCache()
    row = complete_row(IMAGE.image_id)
    read_at = cache.generation  # a GET reads the row from the database...
    cache.forget(row.image_id)  # ...while the collection's notification arrives
    cache.put(row, read_at)
    assert cache.get(row.image_id) is None
    cache.put(row, cache.generation)  # a read that began afterwards is kept
    assert cache.get(row.image_id) is row
    cache.disable()
    assert cache.get(row.image_id) is None
    cache.put(row, cache.generation)
    assert len(cache) == 0
    cache.enable()
    assert cache.get(row.image_id) is None  # enabled again, empty


async def fresh_connection_statuses(url: str, image_id: str, requests: int) -> list[int]:
    """GET the image's JSON, each time on a new connection: with several workers sharing
    the port (SO_REUSEPORT) new connections are spread over all of them."""
    found = []
    for _ in range(requests):
        connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(base_url=url, connector=connector) as http,
            http.get(f"/v1/images/{image_id}/json") as resp,
        ):
            found.append(resp.status)
    return found


async def wait_for_caches_on(url: str, processes: int) -> None:
    """Until every worker's v1 image cache is on (its listener is up), bounded."""
    expected = f"registryd_v1_image_cache_enabled {float(processes)}"
    async with aiohttp.ClientSession(base_url=url) as http:
        for _ in range(300):
            async with http.get("/metrics") as resp:
                if expected in await resp.text():
                    return
            await asyncio.sleep(0.05)
    raise AssertionError(f"not every worker's cache came on: {url}")


async def test_every_worker_of_every_replica_forgets_a_collected_image(
    launcher: Launcher, settings: Settings, svc: Services, db: asyncpg.Connection
) -> None:
    one = launcher.start(settings.data_dir, settings.database_url)
    two = launcher.start(settings.data_dir, settings.database_url, "--workers", "2")
    for server, workers in ((one, 1), (two, 2)):
        await wait_for_caches_on(server.url, workers)
    async with aiohttp.ClientSession(base_url=one.url) as http:
        assert await V1Client(http).push_image(IMAGE) == "pushed"
    await age_everything(db)
    for server in (one, two):  # every worker caches it (and serves it from then on)
        assert set(await fresh_connection_statuses(server.url, IMAGE.image_id, 24)) == {200}

    assert (await collect(svc)).v1_images == [IMAGE.image_id]
    collected = time.monotonic()
    for server in (one, two):
        while set(await fresh_connection_statuses(server.url, IMAGE.image_id, 24)) != {404}:
            assert time.monotonic() - collected < 1.0, "still served from a cache"
    assert time.monotonic() - collected < 1.0 + 1.0  # the last round of requests included


async def test_an_image_scrub_sends_back_to_uploading_is_not_served_from_a_cache(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    cache = client.app[SERVICES].images
    await cache_on(cache)
    v1 = V1Client(client)
    assert await v1.push_image(IMAGE) == "pushed"
    assert await statuses(v1, IMAGE.image_id, ("json",)) == (200,)
    assert cache.get(parse_image_id(IMAGE.image_id)) is not None
    layer = await db.fetchval("SELECT layer_digest FROM v1_images")
    await asyncio.to_thread(paths.blob_path(settings.storage_root, Digest.parse(layer)).unlink)
    assert (await scrub(svc, repair=True)).repaired == [layer]
    for _ in range(50):
        if await statuses(v1, IMAGE.image_id, ("json",)) == (400,):  # being uploaded again
            break
        await asyncio.sleep(0.02)
    assert await statuses(v1, IMAGE.image_id, ("json",)) == (400,)
    assert await v1.push_image(IMAGE) == "pushed"  # the client pushes it again
    assert await statuses(v1, IMAGE.image_id) == (200, 200, 200)
