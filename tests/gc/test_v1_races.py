"""v1 writers that refer to an image (a child's ``parent``, a tag) while the collector takes it.

The collector is paused with the image's row locked but not yet judged; the writer
then runs over HTTP and must wait; once the collector has deleted the image the
writer answers as for an image never pushed, in v1's error format (never a 500 from
a foreign key), and the client's retry works. The other order, a writer holding the
image first, makes the collector skip it.
"""

from __future__ import annotations

import asyncio
import json

import asyncpg

from registryd.db import gc_holds
from registryd.domain.services import Services
from registryd.names import parse_image_id
from tests.conftest import Client
from tests.gc.conftest import age_everything, collect
from tests.gc.test_races import GRACE, paused_collection, still_blocked
from tests.support.images import make_image, random_bytes
from tests.support.v1client import V1Client

PARENT = make_image("v1-race-parent", random_bytes(3000, 301))
CHILD = make_image("v1-race-child", random_bytes(3000, 302), parent=PARENT.image_id)


async def old_lonely_parent(client: Client, db: asyncpg.Connection) -> V1Client:
    """PARENT complete, but neither tagged, declared nor anyone's parent, and old: garbage."""
    v1 = V1Client(client)
    assert await v1.push_image(PARENT) == "pushed"
    await age_everything(db)
    return v1


async def put_json(v1: V1Client, image_json: bytes, image_id: str) -> tuple[int, bytes]:
    status, body, _ = await v1.call(
        "PUT",
        f"/v1/images/{image_id}/json",
        data=image_json,
        headers={"Content-Type": "application/json"},
    )
    return status, body


async def test_child_json_put_while_its_parent_is_collected_is_a_clean_parent_unknown(
    client: Client, svc: Services, db: asyncpg.Connection
) -> None:
    v1 = await old_lonely_parent(client, db)
    pause, gc = await paused_collection(svc, "v1 images locked")
    put = asyncio.create_task(put_json(v1, CHILD.json, CHILD.image_id))
    assert await still_blocked(put)  # holds the parent it checks; the collector has it now
    pause.release.set()
    assert (await gc).v1_images == [PARENT.image_id]
    status, body = await put
    assert (status, json.loads(body)) == (400, {"error": "Image depends on a non existing parent"})
    assert await db.fetchval("SELECT count(*) FROM v1_images") == 0
    # docker pushes the parent again, then the child: both work.
    await v1.push("alice/app", "latest", [PARENT, CHILD])
    pulled = await v1.pull("alice/app", "latest")
    assert [layer for _, _, layer in pulled] == [PARENT.layer, CHILD.layer]


async def test_tag_put_while_its_image_is_collected_is_a_clean_image_unknown(
    client: Client, svc: Services, db: asyncpg.Connection
) -> None:
    v1 = await old_lonely_parent(client, db)
    pause, gc = await paused_collection(svc, "v1 images locked")
    put = asyncio.create_task(
        v1.call(
            "PUT",
            "/v1/repositories/alice/app/tags/latest",
            data=json.dumps(PARENT.image_id),
            headers={"Content-Type": "application/json"},
        )
    )
    assert await still_blocked(put)
    pause.release.set()
    assert (await gc).v1_images == [PARENT.image_id]
    status, body, _ = await put
    assert (status, json.loads(body)) == (404, {"error": "Image not found"})
    assert await db.fetchval("SELECT count(*) FROM v1_tags") == 0
    await v1.push("alice/app", "latest", [PARENT])  # the client's retry
    assert (await v1.pull("alice/app", "latest"))[0][2] == PARENT.layer


async def test_an_image_a_writer_holds_is_skipped_and_lives_through_its_new_reference(
    client: Client, svc: Services, db: asyncpg.Connection
) -> None:
    v1 = await old_lonely_parent(client, db)
    async with svc.pool.acquire() as conn, conn.transaction():
        # What a child's JSON PUT or a tag PUT does between its check and its insert.
        assert await gc_holds.hold_v1_image(conn, parse_image_id(PARENT.image_id))
        report = await collect(svc, grace=GRACE)
        assert report.v1_images == []
        assert report.finished  # postponed, not due again yet
    assert await v1.push_image(CHILD) == "pushed"  # the new reference, committed
    await age_everything(db)
    await db.execute("UPDATE gc_v1_image_reviews SET review_after = now()")
    # The child is garbage itself (old, untagged, undeclared): it goes, then its parent.
    report = await collect(svc, grace=GRACE)
    assert sorted(report.v1_images) == sorted([CHILD.image_id, PARENT.image_id])


async def test_a_held_image_that_is_then_tagged_stays(
    client: Client, svc: Services, db: asyncpg.Connection
) -> None:
    v1 = await old_lonely_parent(client, db)
    async with svc.pool.acquire() as conn, conn.transaction():
        assert await gc_holds.hold_v1_image(conn, parse_image_id(PARENT.image_id))
        assert (await collect(svc, grace=GRACE)).v1_images == []
    status, body, _ = await v1.call(
        "PUT", "/v1/repositories/alice/app/tags/latest", data=json.dumps(PARENT.image_id)
    )
    assert status == 200, body
    await age_everything(db)
    await db.execute("UPDATE gc_v1_image_reviews SET review_after = now()")
    assert (await collect(svc, grace=GRACE)).v1_images == []
    assert (await v1.pull("alice/app", "latest"))[0][2] == PARENT.layer
