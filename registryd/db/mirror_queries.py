"""The pull-through cache's SQL: one function per statement, like ``queries``.

Cached manifests, tags and blobs go to the ordinary tables (``queries``); this
module holds what only the mirror needs: when a tag was last confirmed upstream.
"""

from __future__ import annotations

from registryd.db.queries import Conn, ManifestRow
from registryd.digest import Digest


async def fetch_tagged_manifest_checked(
    conn: Conn, repository_id: int, tag: str
) -> tuple[ManifestRow, float] | None:
    """The tag's manifest and how many seconds ago the upstream last confirmed it.

    A tag never confirmed (pushed some other way, or confirmed before the
    table existed) counts as infinitely old, so it is revalidated first.
    """
    row = await conn.fetchrow(
        """
        SELECT m.digest, m.media_type, m.body,
               EXTRACT(EPOCH FROM now() - c.checked_at)::float8 AS age_seconds
        FROM v2_tags t
        JOIN v2_manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
        LEFT JOIN mirror_tag_checks c ON c.repository_id = t.repository_id AND c.tag = t.tag
        WHERE t.repository_id = $1 AND t.tag = $2
        """,
        repository_id,
        tag,
    )
    if row is None:
        return None
    age = row["age_seconds"]
    manifest = ManifestRow(Digest.parse(row["digest"]), row["media_type"], row["body"])
    return manifest, float("inf") if age is None else float(age)


async def mark_tag_checked(conn: Conn, repository_id: int, tag: str) -> None:
    """Record that the upstream confirmed the tag now."""
    await conn.execute(
        """
        INSERT INTO mirror_tag_checks (repository_id, tag) VALUES ($1, $2)
        ON CONFLICT (repository_id, tag) DO UPDATE SET checked_at = now()
        """,
        repository_id,
        tag,
    )


async def take_download_lock(conn: Conn, key: int) -> None:
    """Take the session-level advisory lock of one blob download, waiting for it.

    Held until the connection closes: a crashed holder releases it with its session.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", key)
