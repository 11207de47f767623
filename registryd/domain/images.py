"""v1 images: JSON, layer, checksum and ancestry, and the upload state machine (v1 spec §6).

An image is ``uploading`` from its first ``PUT json`` until a ``PUT checksum``
whose payload checksum matches the one computed while the layer streamed in;
then it is ``complete`` and immutable. Reads of an uploading image fail with
ImageBeingUploaded; writes to a complete one with ImageAlreadyExists.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from registryd import jsonbody
from registryd.access.images import ImageAccess
from registryd.db import gc_holds, v1_image_queries
from registryd.db.conn import Conn
from registryd.db.v1_image_queries import ImageRow
from registryd.digest import Sha256, payload_checksum_hasher
from registryd.domain import commits
from registryd.domain.image_holders import may_reuse
from registryd.domain.services import Services
from registryd.errors import (
    AncestryInvalid,
    BlobUnknown,
    ChecksumAlreadySet,
    ChecksumMismatch,
    ChecksumMissing,
    ImageAlreadyExists,
    ImageBeingUploaded,
    ImageChanged,
    ImageIdInvalid,
    ImageJsonInvalid,
    ImageUnknown,
    LayerNotUploaded,
    ParentIncomplete,
    ParentUnknown,
    TarsumUnverifiable,
)
from registryd.names import ImageId, parse_image_id
from registryd.storage.base import BlobWriter, OpenBlob

# docker's own limit on layers in an image (and what its graph drivers could mount).
MAX_ANCESTRY_DEPTH = 127


def parse_image_json(image_id: ImageId, body: bytes) -> ImageId | None:
    """Validate a PUT json body (checks in docker-registry's order); return its parent id."""
    data: Any = jsonbody.parse_or_raise(body, ImageJsonInvalid)
    if not isinstance(data, dict):
        raise ImageJsonInvalid("Invalid JSON")
    if "id" not in data:
        raise ImageJsonInvalid("Missing key `id' in JSON")
    if data["id"] != image_id:
        raise ImageJsonInvalid("JSON data contains invalid id")
    parent = data.get("parent")
    if parent in (None, ""):
        return None
    if not isinstance(parent, str):
        raise ImageJsonInvalid("JSON key `parent' must be an image id")
    try:
        parent_id = parse_image_id(parent)
    except ImageIdInvalid:
        raise ParentUnknown() from None
    if parent_id == image_id:
        raise ImageJsonInvalid("Image cannot be its own parent")
    return parent_id


async def _ancestry(
    conn: Conn, access: ImageAccess, image_id: ImageId, parent_id: ImageId | None
) -> list[ImageId]:
    """``[image_id, parent, grand-parent, ...]``; raise if the parent cannot be built on.

    The parent must be complete, so its own ancestry can no longer change and
    no chain of uploads can loop back on itself; one the caller may not read
    is as good as unknown (its id must not leak its existence or its layers).
    """
    if parent_id is None:
        return [image_id]
    # Held until the child's row is in, so garbage collection cannot take the parent
    # between this check and the insert (which would fail on the foreign key).
    held = await gc_holds.hold_v1_image(conn, parent_id)
    parent = await v1_image_queries.fetch_image(conn, parent_id) if held else None
    if parent is None or not await may_reuse(conn, access, parent_id):
        raise ParentUnknown()
    if not parent.is_complete:
        raise ParentIncomplete()
    if image_id in parent.ancestry:
        raise AncestryInvalid("Image ancestry contains a cycle")
    if len(parent.ancestry) >= MAX_ANCESTRY_DEPTH:
        raise AncestryInvalid(f"Image ancestry is deeper than {MAX_ANCESTRY_DEPTH} layers")
    return [image_id, *parent.ancestry]


async def put_image_json(
    svc: Services, image_id: ImageId, body: bytes, access: ImageAccess
) -> None:
    """Store the raw JSON of a new or still-uploading image (resetting its layer).

    Raises ImageJsonInvalid, ParentUnknown, ParentIncomplete, AncestryInvalid,
    or ImageAlreadyExists (first, so that docker skips an image it re-sends).
    """
    parent_id = parse_image_json(image_id, body)
    async with svc.pool.acquire() as conn, conn.transaction():
        existing = await v1_image_queries.fetch_image(conn, image_id)
        if existing is not None and existing.is_complete:
            raise ImageAlreadyExists()
        ancestry = await _ancestry(conn, access, image_id, parent_id)
        generation = await v1_image_queries.upsert_uploading_image(
            conn, image_id, body, parent_id, ancestry
        )
    if generation is None:
        raise ImageAlreadyExists()


async def _fetch_uploading(svc: Services, image_id: ImageId) -> ImageRow:
    async with svc.pool.acquire() as conn:
        image = await v1_image_queries.fetch_image(conn, image_id)
    if image is None:
        raise ImageUnknown()
    if image.is_complete:
        raise ImageAlreadyExists()
    return image


async def put_image_layer(
    svc: Services, image_id: ImageId, body: AsyncIterator[bytes | memoryview]
) -> None:
    """Stream ``body`` into the blob store and attach it to the uploading image.

    The payload checksum (§7.1) is computed in the same pass as the blob's
    sha256. No pool connection is held while bytes flow. Raises ImageUnknown,
    ImageAlreadyExists, ImageChanged, and whatever ``body`` raises (too large,
    incomplete); in every failure the pending bytes are discarded.
    """
    image = await _fetch_uploading(svc, image_id)
    payload = payload_checksum_hasher(image.json)
    async with svc.storage.writer(tee=payload) as writer:
        async for chunk in body:
            await writer.write(chunk)
        # Commit and attach are one unit (domain/commits.py): a client that goes away
        # or a drain cannot leave a stored blob that no image points to. The commit
        # takes the blob's row before it places the bytes (db/gc_holds.py), and the
        # writer's exit waits for it, so it never discards bytes under it.
        attached = await commits.run_commit(svc, _commit_layer(svc, writer, image, payload))
    if not attached:
        # The blob stays stored (it is valid content); only this attachment is void.
        raise ImageChanged()


async def _commit_layer(
    svc: Services, writer: BlobWriter, image: ImageRow, payload: Sha256
) -> bool:
    """Make the layer durable and point the image at it; False if the image changed.

    The blob's row exists (and is held) before the file gets its address, so a
    database failure before the rename leaves no blob file without a row, and
    garbage collection cannot remove the file until the image points at it.
    """
    digest = writer.digest()
    async with svc.pool.acquire() as conn, conn.transaction():
        await gc_holds.hold_blob(conn, digest, writer.size_bytes)
        await writer.commit(digest)
        return await v1_image_queries.set_image_layer(
            conn,
            image.image_id,
            image.json_generation,
            digest,
            writer.size_bytes,
            str(payload.digest()),
        )


async def put_image_checksum(
    svc: Services, image_id: ImageId, payload_checksum: str | None, tarsum: str | None
) -> None:
    """Complete the image if the client's payload checksum matches ours (§5.4).

    A tarsum alone, sent before the layer, is kept as the client's claim (Quay
    compatibility); sent after the layer it cannot complete the image.
    """
    payload_checksum = payload_checksum or None
    tarsum = tarsum or None
    async with svc.pool.acquire() as conn, conn.transaction():
        image = await v1_image_queries.fetch_image_for_update(conn, image_id)
        if image is None:
            raise ImageUnknown()
        if image.is_complete:
            raise ChecksumAlreadySet()
        if payload_checksum is not None:
            if image.checksum_payload is None:
                raise LayerNotUploaded()
            if payload_checksum != image.checksum_payload:
                raise ChecksumMismatch()
            await v1_image_queries.complete_image(conn, image_id, tarsum)
        elif tarsum is not None:
            if image.layer_digest is not None:
                raise TarsumUnverifiable()
            await v1_image_queries.set_image_tarsum(conn, image_id, tarsum)
        else:
            raise ChecksumMissing()


async def fetch_complete_image(svc: Services, image_id: ImageId) -> ImageRow:
    """The image if it is complete; raise ImageUnknown or ImageBeingUploaded.

    Complete images come from the per-process cache after the first read (emptied
    of collected images by ``gc/image_notices.py``).
    """
    cached = svc.images.get(image_id)
    if cached is not None:
        return cached
    generation = svc.images.generation  # a collection meanwhile: do not keep what we read
    async with svc.pool.acquire() as conn:
        image = await v1_image_queries.fetch_image(conn, image_id)
    if image is None:
        raise ImageUnknown()
    if not image.is_complete:
        raise ImageBeingUploaded()
    svc.images.put(image, generation)
    return image


async def open_image_layer(svc: Services, image: ImageRow) -> OpenBlob:
    """Open a complete image's layer for reading; raise BlobUnknown if it vanished."""
    assert image.layer_digest is not None  # guaranteed for complete images by a CHECK
    try:
        return await svc.storage.open(image.layer_digest, image.layer_size_bytes)
    except BlobUnknown:
        # Whatever removed the blob may have removed the image too: ask the database next time.
        svc.images.forget(image.image_id)
        raise
