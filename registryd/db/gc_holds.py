"""What writers do so that the online collector never removes what they are making live.

Each call runs inside the writer's transaction, before the reference is created,
and what it locks stays locked until that transaction commits or rolls back.
The collector takes the same rows ``FOR UPDATE SKIP LOCKED``, so it either
skips them (and looks again later, when the new reference is visible) or has
already deleted them, in which case the writer sees that and acts on it.
"""

from __future__ import annotations

from registryd.db import gc_queries
from registryd.db.conn import Conn
from registryd.digest import Digest
from registryd.names import ImageId


async def hold_blob(conn: Conn, digest: Digest, size_bytes: int) -> None:
    """Make sure the blob has a row, and hold it, before its file is placed.

    Call it, then place the file, then create the reference, all in one
    transaction. If a collector deleted the row, it is inserted again (waiting
    for that collector's transaction); if the file's removal is still pending
    it is taken back, and if it is in progress this waits for it to finish, so
    the file placed afterwards is never the one removed (a dedup commit writes
    its bytes again when the stored copy has gone).
    """
    while True:
        await gc_queries.insert_blob_row(conn, digest, size_bytes)
        # A separate statement: it sees a deletion committed while the insert waited.
        if await gc_queries.lock_blob_row(conn, digest):
            break
    await gc_queries.cancel_blob_deletion(conn, digest)


async def link_blob(conn: Conn, repository_id: int, digest: Digest) -> None:
    """Link a just pushed or mounted blob into the repository, counted as new (a link's
    age decides when an unreferenced one is collected)."""
    await gc_queries.link_blob_fresh(conn, repository_id, digest)


async def hold_existing_blob(conn: Conn, digest: Digest) -> bool:
    """Hold a stored blob's row (a mount); False when it was collected meanwhile."""
    return await gc_queries.share_blob_row(conn, digest)


async def hold_manifest_inputs(
    conn: Conn, repository_id: int, digest: Digest, blobs: list[Digest], children: list[Digest]
) -> None:
    """Before a manifest PUT checks what the manifest refers to: hold the repository's
    links to its blobs and its child manifests, and count the manifest itself as new
    again if it is re-pushed (an untagged manifest is judged by its age).

    A link or child the collector deleted first is simply missing afterwards,
    and the PUT answers MANIFEST_BLOB_UNKNOWN, as for any blob never pushed.
    """
    if blobs:
        await gc_queries.share_repository_links(conn, repository_id, blobs)
    if children:
        await gc_queries.share_manifests(conn, repository_id, children)
    await gc_queries.refresh_manifest(conn, repository_id, digest)


async def hold_v1_image(conn: Conn, image_id: ImageId) -> bool:
    """Hold a v1 image's row before a reference to it is created (a child's ``parent``,
    a v1 tag); False when the collector deleted it first (the writer then answers
    as for an image never pushed, instead of failing on the foreign key)."""
    return await gc_queries.share_v1_image_key(conn, image_id)
