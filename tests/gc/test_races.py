"""A writer reviving a digest while the collector is at its critical points, deterministically.

The collector is paused (``PauseAt``) right where it would race: rows locked
but not yet judged, rows deleted but not committed, rows committed but files not
yet removed, files being removed. The writer then does its work over HTTP, and
the collector is let go. Whatever the order, what the writer made live must pull.
"""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg

from registryd.config import Settings
from registryd.db import gc_holds
from registryd.digest import Digest
from registryd.domain.services import Services
from registryd.gc.collector import Collector
from registryd.gc.report import Report
from tests.conftest import Client
from tests.gc.conftest import PauseAt, age_everything, collect, stored
from tests.support.content import sha256
from tests.support.images import make_image, random_bytes
from tests.support.v1client import V1Client
from tests.support.v2client import V2Client, image_manifest

# What the writers make is new, what the collector takes is made old (age_everything).
GRACE = 3600
BLOB = random_bytes(50_000, 99)
DIGEST = sha256(BLOB)


async def garbage_blob(client: Client, db: asyncpg.Connection) -> V2Client:
    """BLOB stored, its only link deleted, everything old: the collector will take it."""
    v2 = V2Client(client)
    await v2.push_blob("alice/old", BLOB)
    status, _, _ = await v2.call("DELETE", f"/v2/alice/old/blobs/{DIGEST}")
    assert status == 202
    await age_everything(db)
    return v2


async def paused_collection(svc: Services, point: str) -> tuple[PauseAt, asyncio.Task[Report]]:
    pause = PauseAt(point)
    settings = dataclasses.replace(svc.settings, gc_grace_seconds=GRACE)
    task = asyncio.create_task(Collector(dataclasses.replace(svc, settings=settings), pause).run())
    await asyncio.wait_for(pause.reached.wait(), 30)
    return pause, task


async def still_blocked(task: asyncio.Task[object]) -> bool:
    await asyncio.sleep(0.3)
    return not task.done()


async def pulls(v2: V2Client, name: str) -> bool:
    status, body, _ = await v2.call("GET", f"/v2/{name}/blobs/{DIGEST}")
    return status == 200 and body == BLOB


async def test_upload_commit_while_rows_are_committed_and_files_not_yet_removed(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    v2 = await garbage_blob(client, db)
    pause, gc = await paused_collection(svc, "blob rows committed")
    assert await db.fetchval("SELECT count(*) FROM blobs") == 0  # the row is gone
    assert stored(settings, DIGEST)  # the file not yet
    await v2.push_blob("alice/new", BLOB)  # a dedup commit: finds the file, takes back its removal
    pause.release.set()
    report = await gc
    assert [d for d, _ in report.blobs] == [DIGEST]
    assert report.files_removed == 0
    assert stored(settings, DIGEST)
    assert await pulls(v2, "alice/new")


async def test_upload_commit_waits_for_a_file_removal_in_progress_then_writes_again(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    v2 = await garbage_blob(client, db)
    pause, gc = await paused_collection(svc, "removing files")
    push = asyncio.create_task(v2.push_blob("alice/new", BLOB))
    assert await still_blocked(push)  # waits for the removal it cannot take back
    pause.release.set()
    report = await gc
    await push
    assert report.files_removed == 1
    assert stored(settings, DIGEST)  # written again by the upload
    assert await pulls(v2, "alice/new")


async def test_upload_commit_waits_while_the_row_is_being_deleted(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    v2 = await garbage_blob(client, db)
    pause, gc = await paused_collection(svc, "blob rows deleted")
    push = asyncio.create_task(v2.push_blob("alice/new", BLOB))
    assert await still_blocked(push)
    pause.release.set()
    await gc
    await push
    assert stored(settings, DIGEST)
    assert await pulls(v2, "alice/new")
    # And the next collection leaves it alone: it is linked now.
    assert (await collect(svc, grace=GRACE)).blobs == []


async def test_v1_layer_put_waits_while_the_row_is_being_deleted(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    await garbage_blob(client, db)
    image = make_image("race-v1", BLOB)
    v1 = V1Client(client)
    pause, gc = await paused_collection(svc, "blob rows deleted")
    push = asyncio.create_task(v1.push("alice/v1", "latest", [image]))
    assert await still_blocked(push)
    pause.release.set()
    await gc
    await push
    pulled = await v1.pull("alice/v1", "latest")
    assert pulled[0][2] == BLOB
    await age_everything(db)
    assert (await collect(svc, grace=GRACE)).blobs == []
    assert stored(settings, DIGEST)


async def test_v1_layer_put_while_the_file_removal_is_pending(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    await garbage_blob(client, db)
    v1 = V1Client(client)
    pause, gc = await paused_collection(svc, "blob rows committed")
    await v1.push("alice/v1", "latest", [make_image("race-v1-pending", BLOB)])
    pause.release.set()
    assert (await gc).files_removed == 0
    assert (await v1.pull("alice/v1", "latest"))[0][2] == BLOB


async def test_mount_while_the_source_link_is_being_collected(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    v2 = V2Client(client)
    await v2.push_blob("alice/source", BLOB)  # linked but never referenced: garbage when old
    await age_everything(db)
    pause, gc = await paused_collection(svc, "links locked")
    status, _, _ = await v2.call(
        "POST", f"/v2/alice/target/blobs/uploads/?mount={DIGEST}&from=alice/source"
    )
    assert status == 201  # mounted: the blob's row is untouched yet
    pause.release.set()
    report = await gc
    assert report.links == 1  # the old source link went; the new target link keeps the blob
    assert report.blobs == []
    assert await pulls(v2, "alice/target")
    assert not await pulls(v2, "alice/source")


async def test_manifest_put_waits_for_a_link_being_collected_and_is_refused_cleanly(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    v2 = V2Client(client)
    config = b"{}"
    for blob in (config, BLOB):
        await v2.push_blob("alice/app", blob)
    await age_everything(db)
    pause, gc = await paused_collection(svc, "links locked")
    manifest = image_manifest(config, [BLOB])
    put = asyncio.create_task(v2.push_manifest("alice/app", "v1", manifest))
    assert await still_blocked(put)  # holds the links it checks; the collector holds them now
    pause.release.set()
    await gc
    status, body, _ = await put
    assert status == 400, body  # MANIFEST_BLOB_UNKNOWN: the links went first
    assert b"MANIFEST_BLOB_UNKNOWN" in body
    assert await db.fetchval("SELECT count(*) FROM v2_manifests") == 0
    # The client pushes the blobs again, and then the manifest.
    for blob in (config, BLOB):
        await v2.push_blob("alice/app", blob)
    status, body, _ = await v2.push_manifest("alice/app", "v1", manifest)
    assert status == 201, body
    await age_everything(db)
    assert (await collect(svc, grace=GRACE)).blobs == []
    assert await pulls(v2, "alice/app")


async def test_a_blob_a_writer_holds_is_skipped_and_reviewed_again(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    await garbage_blob(client, db)
    async with svc.pool.acquire() as conn, conn.transaction():
        # What a mount does between its check and its link.
        assert await gc_holds.hold_existing_blob(conn, Digest.parse(DIGEST))
        report = await collect(svc, grace=GRACE)
        assert report.blobs == []
        assert report.finished  # postponed, not due again yet
    assert stored(settings, DIGEST)
    await db.execute("UPDATE gc_blob_reviews SET review_after = now()")
    assert [d for d, _ in (await collect(svc, grace=GRACE)).blobs] == [DIGEST]
    assert not stored(settings, DIGEST)


async def test_the_collector_yields_to_a_writer_instead_of_making_it_wait(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    await garbage_blob(client, db)
    async with svc.pool.acquire() as conn, conn.transaction():
        # A writer's trigger queueing a review of the same blob, not yet committed.
        await conn.execute("SELECT gc_review_blob($1, 'a link deleted')", DIGEST)
        started = asyncio.get_running_loop().time()
        report = await collect(svc, grace=GRACE)
        assert asyncio.get_running_loop().time() - started < 5
        assert not report.finished  # gave up its batch; nothing of it is committed
        assert report.blobs == []
    assert stored(settings, DIGEST)
    report = await collect(svc, grace=GRACE)
    assert [d for d, _ in report.blobs] == [DIGEST]
    assert report.finished
