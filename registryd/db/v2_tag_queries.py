"""SQL of v2 tags (``v2_tags``)."""

from __future__ import annotations

from registryd.db.conn import Conn
from registryd.digest import Digest


async def upsert_v2_tag(conn: Conn, repository_id: int, tag: str, digest: Digest) -> None:
    await conn.execute(
        """
        INSERT INTO v2_tags (repository_id, tag, manifest_digest) VALUES ($1, $2, $3)
        ON CONFLICT (repository_id, tag) DO UPDATE
        SET manifest_digest = EXCLUDED.manifest_digest, updated_at = now()
        """,
        repository_id,
        tag,
        str(digest),
    )


async def delete_v2_tag(conn: Conn, repository_id: int, tag: str) -> bool:
    status = await conn.execute(
        "DELETE FROM v2_tags WHERE repository_id = $1 AND tag = $2", repository_id, tag
    )
    return bool(status == "DELETE 1")


async def fetch_v2_tags_page(
    conn: Conn, repository_id: int, last: str | None, limit: int
) -> list[str]:
    """Up to ``limit`` tags after ``last`` (exclusive), in byte order."""
    rows = await conn.fetch(
        """
        SELECT tag FROM v2_tags
        WHERE repository_id = $1 AND ($2::text IS NULL OR tag > $2::text COLLATE "C")
        ORDER BY tag LIMIT $3
        """,
        repository_id,
        last,
        limit,
    )
    return [r["tag"] for r in rows]
