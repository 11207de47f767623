"""SQL of v2 repository blob links (``v2_repository_blobs`` joined with ``blobs``)."""

from __future__ import annotations

from registryd.db.conn import Conn
from registryd.digest import Digest


async def link_blob(conn: Conn, repository_id: int, digest: Digest) -> None:
    """Make a stored blob part of a repository (idempotent)."""
    await conn.execute(
        """
        INSERT INTO v2_repository_blobs (repository_id, digest) VALUES ($1, $2)
        ON CONFLICT DO NOTHING
        """,
        repository_id,
        str(digest),
    )


async def fetch_repository_blob_size(conn: Conn, repository_id: int, digest: Digest) -> int | None:
    """The size of a blob the repository holds, or None."""
    size: int | None = await conn.fetchval(
        """
        SELECT b.size_bytes FROM v2_repository_blobs l JOIN blobs b USING (digest)
        WHERE l.repository_id = $1 AND l.digest = $2
        """,
        repository_id,
        str(digest),
    )
    return size


async def unlink_blob(conn: Conn, repository_id: int, digest: Digest) -> bool:
    status = await conn.execute(
        "DELETE FROM v2_repository_blobs WHERE repository_id = $1 AND digest = $2",
        repository_id,
        str(digest),
    )
    return bool(status == "DELETE 1")
