"""The pull-through cache's SQL: one function per statement, like ``queries``.

Cached manifests, tags and blobs go to the ordinary tables (``queries``). A
mirrored tag's ``updated_at`` is when the upstream last confirmed it (no one
pushes to a mirrored namespace, so nothing else moves it): its age decides
whether it is served as is or revalidated.
"""

from __future__ import annotations

from registryd.db.conn import Conn
from registryd.db.manifest_queries import ManifestRow
from registryd.digest import Digest


async def fetch_tagged_manifest_age(
    conn: Conn, repository_id: int, tag: str
) -> tuple[ManifestRow, float] | None:
    """The tag's manifest and how many seconds ago the tag was last confirmed."""
    row = await conn.fetchrow(
        """
        SELECT m.digest, m.media_type, m.body,
               EXTRACT(EPOCH FROM now() - t.updated_at)::float8 AS age_seconds
        FROM v2_tags t
        JOIN v2_manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
        WHERE t.repository_id = $1 AND t.tag = $2
        """,
        repository_id,
        tag,
    )
    if row is None:
        return None
    manifest = ManifestRow(Digest.parse(row["digest"]), row["media_type"], row["body"])
    return manifest, float(row["age_seconds"])


async def touch_tag(conn: Conn, repository_id: int, tag: str) -> None:
    """Record that the upstream confirmed the tag now."""
    await conn.execute(
        "UPDATE v2_tags SET updated_at = now() WHERE repository_id = $1 AND tag = $2",
        repository_id,
        tag,
    )


async def take_download_lock(conn: Conn, key: int) -> None:
    """Take the session-level advisory lock of one blob download, waiting for it.

    Held until the connection closes: a crashed holder releases it with its session.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", key)
