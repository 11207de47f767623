"""Attack: delete a blob while a manifest that needs it is being committed.

The manifest PUT is held after its reference check (a lock on ``v2_tags``
stops it at the tag update) while ``DELETE /v2/<name>/blobs/<layer>`` runs.
The two must serialise: never a 201 manifest whose layer is gone. Deleting a
blob or a child manifest that a manifest of the repository refers to is
refused (409) — a live image cannot be broken.
"""

from __future__ import annotations

import asyncio
import json

import asyncpg

from tests.conftest import Client
from tests.support.content import sha256
from tests.support.polling import eventually
from tests.support.v2client import OCI_INDEX, V2Client, descriptor, image_manifest

CONFIG = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
LAYER = b"layer bytes of the race"


async def _waiting_on_locks(db: asyncpg.Connection, count: int) -> bool:
    waiting: int = await db.fetchval(
        """
        SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE NOT l.granted AND a.datname = current_database()
        """
    )
    return waiting >= count


async def test_blob_delete_during_manifest_put_never_leaves_a_broken_image(
    client: Client, db: asyncpg.Connection, database_url: str
) -> None:
    v2 = V2Client(client)
    for blob in (CONFIG, LAYER):
        await v2.push_blob("alice/app", blob)
    manifest = image_manifest(CONFIG, [LAYER])

    locker = await asyncpg.connect(database_url)
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE v2_tags IN EXCLUSIVE MODE")
        put = asyncio.create_task(v2.push_manifest("alice/app", "latest", manifest))
        await eventually(
            lambda: _waiting_on_locks(db, 1), "the manifest PUT to wait at the tag update"
        )
        delete = asyncio.create_task(v2.call("DELETE", f"/v2/alice/app/blobs/{sha256(LAYER)}"))
        # Either it waits for the manifest (serialised) or it is already done (the race).
        await asyncio.wait([delete], timeout=1.0)
        await tx.rollback()
    finally:
        await locker.close()
    put_status, put_body, _ = await put
    delete_status, delete_body, _ = await delete

    assert put_status == 201, put_body
    assert delete_status == 409, delete_body
    assert json.loads(delete_body)["errors"][0]["code"] == "DENIED"
    status, body, _ = await v2.call("GET", f"/v2/alice/app/blobs/{sha256(LAYER)}")
    assert status == 200
    assert body == LAYER


async def test_deleting_what_a_manifest_refers_to_is_refused(client: Client) -> None:
    v2 = V2Client(client)
    manifest = await v2.push_image("alice/app", "v1", [LAYER])
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [descriptor(manifest, "application/vnd.oci.image.manifest.v1+json")],
        }
    ).encode()
    status, body, _ = await v2.push_manifest("alice/app", "multi", index, OCI_INDEX)
    assert status == 201, body

    # A layer of a manifest, and a child manifest of a tagged index.
    for path in (
        f"blobs/{sha256(LAYER)}",
        f"blobs/{sha256(CONFIG)}",
        f"manifests/{sha256(manifest)}",
    ):
        status, body, _ = await v2.call("DELETE", f"/v2/alice/app/{path}")
        assert status == 409, (path, body)
        error = json.loads(body)["errors"][0]
        assert error["code"] == "DENIED"
        assert "referenced" in error["message"]
    status, body, _ = await v2.call("GET", "/v2/alice/app/manifests/multi")
    assert status == 200
    status, body, _ = await v2.call("GET", f"/v2/alice/app/blobs/{sha256(LAYER)}")
    assert body == LAYER

    # Top down works: the index, then the manifest, then its blobs.
    for path in (
        f"manifests/{sha256(index)}",
        f"manifests/{sha256(manifest)}",
        f"blobs/{sha256(LAYER)}",
        f"blobs/{sha256(CONFIG)}",
    ):
        status, body, _ = await v2.call("DELETE", f"/v2/alice/app/{path}")
        assert status == 202, (path, body)
