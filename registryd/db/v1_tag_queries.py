"""SQL of v1 tags (``v1_tags``)."""

from __future__ import annotations

import json
from typing import Any

from registryd.db.conn import Conn
from registryd.names import ImageId


async def fetch_v1_tags(conn: Conn, repository_id: int) -> dict[str, ImageId]:
    rows = await conn.fetch(
        "SELECT tag, image_id FROM v1_tags WHERE repository_id = $1 ORDER BY tag",
        repository_id,
    )
    return {r["tag"]: r["image_id"] for r in rows}


async def fetch_v1_tag(conn: Conn, repository_id: int, tag: str) -> ImageId | None:
    image_id: ImageId | None = await conn.fetchval(
        "SELECT image_id FROM v1_tags WHERE repository_id = $1 AND tag = $2",
        repository_id,
        tag,
    )
    return image_id


async def upsert_v1_tag(
    conn: Conn,
    repository_id: int,
    tag: str,
    image_id: ImageId,
    metadata: dict[str, Any],
) -> None:
    await conn.execute(
        """
        INSERT INTO v1_tags (repository_id, tag, image_id, metadata) VALUES ($1, $2, $3, $4)
        ON CONFLICT (repository_id, tag) DO UPDATE
        SET image_id = EXCLUDED.image_id, metadata = EXCLUDED.metadata, updated_at = now()
        """,
        repository_id,
        tag,
        image_id,
        json.dumps(metadata),
    )


async def delete_v1_tag(conn: Conn, repository_id: int, tag: str) -> bool:
    status = await conn.execute(
        "DELETE FROM v1_tags WHERE repository_id = $1 AND tag = $2", repository_id, tag
    )
    return bool(status == "DELETE 1")
