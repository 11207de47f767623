"""Attack (fault): leave temp and blob files that nothing will ever remove.

- A ``kill -9`` mid-upload leaves a temp file: the next start removes it at
  once, however young (its process is dead), not an hour later.
- A database failure while a v1 layer or a v2 blob is committed leaves no
  blob file without its row.
- Deleting a repository while a v2 PATCH streams into one of its sessions
  leaves no temp file.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg

from registryd.config import Settings
from registryd.storage import paths
from tests.conftest import Client
from tests.process.conftest import Launcher
from tests.support.content import sha256
from tests.support.images import make_image, random_bytes
from tests.support.polling import eventually
from tests.support.store import blob_files, upload_files

MIB = 1024 * 1024


async def test_young_crash_temp_files_are_swept_at_start(
    launcher: Launcher, tmp_path: Path, database_url: str
) -> None:
    data_dir = tmp_path / "data"
    uploads = paths.uploads_dir(data_dir / "storage")
    server = launcher.start(data_dir, database_url)
    image = make_image("orphan", random_bytes(3 * MIB, 8))
    hang = asyncio.Event()

    async def hanging_body() -> AsyncIterator[bytes]:
        yield image.layer[:MIB]
        await hang.wait()

    async with aiohttp.ClientSession(base_url=server.url) as http:
        assert (await http.put(f"/v1/images/{image.image_id}/json", data=image.json)).status == 200
        upload = asyncio.create_task(
            http.put(f"/v1/images/{image.image_id}/layer", data=hanging_body())
        )
        await eventually(lambda: any(uploads.iterdir()), "the layer's temp file")
        server.proc.kill()
        await asyncio.to_thread(server.proc.wait, 10)
        hang.set()
        with contextlib.suppress(aiohttp.ClientError):
            await upload
    assert list(uploads.iterdir())

    # Default stale_upload_seconds (an hour): the file is seconds old, and still goes.
    server = launcher.start(data_dir, database_url)
    await eventually(lambda: not any(uploads.iterdir()), "the sweep of the dead process's file")
    assert await asyncio.to_thread(server.stop) == 0


async def test_database_failure_in_a_blob_commit_leaves_no_blob_file(
    client: Client, settings: Settings, db: asyncpg.Connection
) -> None:
    image = make_image("dbfail", random_bytes(100_000, 9))
    assert (await client.put(f"/v1/images/{image.image_id}/json", data=image.json)).status == 200
    await db.execute(
        """
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'the database fails now'; END $$;
        CREATE TRIGGER refuse_blobs BEFORE INSERT ON blobs FOR EACH ROW EXECUTE FUNCTION refuse();
        """
    )
    resp = await client.put(f"/v1/images/{image.image_id}/layer", data=image.layer)
    assert resp.status == 500
    assert blob_files(settings) == []
    assert upload_files(settings) == []

    # The same for a v2 upload's commit.
    resp = await client.post(
        f"/v2/alice/app/blobs/uploads/?digest={sha256(image.layer)}", data=image.layer
    )
    assert resp.status == 500
    assert blob_files(settings) == []

    await db.execute("DROP TRIGGER refuse_blobs ON blobs")
    resp = await client.put(f"/v1/images/{image.image_id}/layer", data=image.layer)
    assert resp.status == 200
    assert len(blob_files(settings)) == 1


async def test_repository_deleted_during_patch_leaves_no_temp_file(
    client: Client, settings: Settings, db: asyncpg.Connection
) -> None:
    resp = await client.post("/v2/alice/app/blobs/uploads/")
    location = resp.headers["Location"]
    resume = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"a" * MIB
        await resume.wait()
        yield b"b" * 1000

    patch = asyncio.create_task(client.patch(location, data=slow_body()))
    await eventually(lambda: _claimed(db), "the PATCH to claim the session")
    resp = await client.delete("/v1/repositories/alice/app/")
    assert resp.status == 200
    resume.set()
    resp = await patch
    assert resp.status in (404, 429)
    assert upload_files(settings) == []
    assert await db.fetchval("SELECT count(*) FROM v2_uploads") == 0


async def _claimed(db: asyncpg.Connection) -> bool:
    return bool(await db.fetchval("SELECT count(*) FROM v2_uploads WHERE busy_since IS NOT NULL"))
