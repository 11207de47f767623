"""SQL of v1 images (``v1_images``): JSON, layer pointer, checksums, completion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from registryd.db.conn import Conn
from registryd.digest import Digest
from registryd.names import ImageId

COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class ImageRow:
    image_id: ImageId
    json: bytes
    parent_id: ImageId | None
    ancestry: list[ImageId]
    state: str
    json_generation: int
    layer_digest: Digest | None
    layer_size_bytes: int | None
    checksum_payload: str | None
    checksum_tarsum: str | None
    updated_at: datetime

    @property
    def is_complete(self) -> bool:
        return self.state == COMPLETE


def _image(row: asyncpg.Record) -> ImageRow:
    layer = row["layer_digest"]
    return ImageRow(
        image_id=row["image_id"],
        json=row["json"],
        parent_id=row["parent_id"],
        ancestry=list(row["ancestry"]),
        state=row["state"],
        json_generation=row["json_generation"],
        layer_digest=Digest.parse(layer) if layer is not None else None,
        layer_size_bytes=row["layer_size_bytes"],
        checksum_payload=row["checksum_payload"],
        checksum_tarsum=row["checksum_tarsum"],
        updated_at=row["updated_at"],
    )


async def fetch_image(conn: Conn, image_id: ImageId) -> ImageRow | None:
    row = await conn.fetchrow("SELECT * FROM v1_images WHERE image_id = $1", image_id)
    return _image(row) if row is not None else None


async def fetch_image_for_update(conn: Conn, image_id: ImageId) -> ImageRow | None:
    """Fetch and lock the row until the surrounding transaction ends."""
    row = await conn.fetchrow("SELECT * FROM v1_images WHERE image_id = $1 FOR UPDATE", image_id)
    return _image(row) if row is not None else None


async def upsert_uploading_image(
    conn: Conn,
    image_id: ImageId,
    image_json: bytes,
    parent_id: ImageId | None,
    ancestry: list[ImageId],
) -> int | None:
    """Store (or replace) the JSON of an image that is not complete.

    A replace resets the layer and checksums (a retried push starts over).
    Returns the new json_generation, or None when the image is already complete.
    """
    generation: int | None = await conn.fetchval(
        """
        INSERT INTO v1_images (image_id, json, parent_id, ancestry, state)
        VALUES ($1, $2, $3, $4, 'uploading')
        ON CONFLICT (image_id) DO UPDATE SET
            json = EXCLUDED.json,
            parent_id = EXCLUDED.parent_id,
            ancestry = EXCLUDED.ancestry,
            json_generation = v1_images.json_generation + 1,
            layer_digest = NULL,
            layer_size_bytes = NULL,
            checksum_payload = NULL,
            checksum_tarsum = NULL,
            updated_at = now()
        WHERE v1_images.state = 'uploading'
        RETURNING json_generation
        """,
        image_id,
        image_json,
        parent_id,
        ancestry,
    )
    return generation


async def set_image_layer(
    conn: Conn,
    image_id: ImageId,
    json_generation: int,
    layer_digest: Digest,
    layer_size_bytes: int,
    checksum_payload: str,
) -> bool:
    """Point an uploading image at its layer, unless its JSON changed meanwhile.

    Returns False when the image was completed or its JSON re-sent since
    ``json_generation`` was read.
    """
    status = await conn.execute(
        """
        UPDATE v1_images
        SET layer_digest = $3, layer_size_bytes = $4, checksum_payload = $5, updated_at = now()
        WHERE image_id = $1 AND json_generation = $2 AND state = 'uploading'
        """,
        image_id,
        json_generation,
        str(layer_digest),
        layer_size_bytes,
        checksum_payload,
    )
    return bool(status == "UPDATE 1")


async def set_image_tarsum(conn: Conn, image_id: ImageId, checksum_tarsum: str | None) -> None:
    await conn.execute(
        "UPDATE v1_images SET checksum_tarsum = $2, updated_at = now() WHERE image_id = $1",
        image_id,
        checksum_tarsum,
    )


async def complete_image(conn: Conn, image_id: ImageId, checksum_tarsum: str | None) -> None:
    """Mark an image complete, keeping any tarsum already stored when none is given."""
    await conn.execute(
        """
        UPDATE v1_images
        SET state = 'complete', checksum_tarsum = COALESCE($2, checksum_tarsum), updated_at = now()
        WHERE image_id = $1
        """,
        image_id,
        checksum_tarsum,
    )
