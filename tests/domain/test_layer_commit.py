"""A layer upload cancelled after its last byte (client gone, drain) still commits as one unit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg

from registryd.access.decision import Caller
from registryd.access.identity import ANONYMOUS
from registryd.access.images import ImageAccess
from registryd.config import Settings
from registryd.db.pool import create_pool
from registryd.domain import images
from registryd.domain.services import Services
from registryd.names import parse_image_id
from registryd.storage.filesystem import FilesystemBackend
from tests.support.images import make_image
from tests.support.polling import eventually
from tests.support.store import blob_files, upload_files

LAYER = b"layer bytes " * 10_000


async def test_cancel_after_the_last_byte_keeps_blob_and_image_consistent(
    settings: Settings, db: asyncpg.Connection
) -> None:
    storage = FilesystemBackend(settings.storage_root)
    await storage.start()
    assert settings.database_url is not None
    pool = await create_pool(settings.database_url, settings)
    svc = Services(pool, storage, settings, b"")
    image = make_image("cancelled", LAYER)
    image_id = parse_image_id(image.image_id)
    try:
        await images.put_image_json(
            svc, image_id, image.json, ImageAccess(Caller(ANONYMOUS), settings)
        )
        body_done = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield LAYER
            body_done.set()

        upload = asyncio.create_task(images.put_image_layer(svc, image_id, body()))
        await body_done.wait()
        upload.cancel()  # between the last byte and the commit
        await asyncio.gather(upload, return_exceptions=True)

        async def committed() -> bool:
            return await db.fetchval("SELECT layer_digest FROM v1_images") is not None

        await eventually(committed, "the shielded commit finishes on its own", 5)
        layer = await db.fetchval("SELECT layer_digest FROM v1_images")
        assert [p.name for p in blob_files(settings)] == [layer.removeprefix("sha256:")]
        assert upload_files(settings) == []
    finally:
        await pool.close()
