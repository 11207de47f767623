"""SQL that makes a manifest's reference check and a delete of what it refers to serialise.

A manifest PUT locks the blob links and child manifests it refers to FOR SHARE
while it checks and inserts; a DELETE locks its row FOR UPDATE first and only
then, in a statement of its own (a fresh snapshot under READ COMMITTED), looks
for manifests that refer to it. Whichever comes second sees the other's result.
"""

from __future__ import annotations

from registryd.db.conn import Conn
from registryd.digest import Digest


async def lock_repository_blob_sizes(
    conn: Conn, repository_id: int, digests: list[Digest]
) -> dict[Digest, int]:
    """Sizes of those of ``digests`` the repository holds; their links stay locked
    (FOR SHARE) until the transaction ends."""
    rows = await conn.fetch(
        """
        SELECT l.digest, b.size_bytes
        FROM v2_repository_blobs l JOIN blobs b USING (digest)
        WHERE l.repository_id = $1 AND l.digest = ANY($2::text[])
        FOR SHARE OF l
        """,
        repository_id,
        [str(d) for d in digests],
    )
    return {Digest.parse(r["digest"]): r["size_bytes"] for r in rows}


async def lock_manifest_sizes(
    conn: Conn, repository_id: int, digests: list[Digest]
) -> dict[Digest, int]:
    """Body sizes of those of ``digests`` that are manifests of the repository, locked
    FOR SHARE until the transaction ends."""
    rows = await conn.fetch(
        """
        SELECT digest, octet_length(body) AS size_bytes FROM v2_manifests
        WHERE repository_id = $1 AND digest = ANY($2::text[])
        FOR SHARE
        """,
        repository_id,
        [str(d) for d in digests],
    )
    return {Digest.parse(r["digest"]): r["size_bytes"] for r in rows}


async def lock_blob_link(conn: Conn, repository_id: int, digest: Digest) -> bool:
    """Lock the repository's link to a blob FOR UPDATE; False if there is none."""
    found = await conn.fetchval(
        """
        SELECT true FROM v2_repository_blobs WHERE repository_id = $1 AND digest = $2
        FOR UPDATE
        """,
        repository_id,
        str(digest),
    )
    return bool(found)


async def lock_manifest(conn: Conn, repository_id: int, digest: Digest) -> bool:
    """Lock a manifest of the repository FOR UPDATE; False if there is none."""
    found = await conn.fetchval(
        "SELECT true FROM v2_manifests WHERE repository_id = $1 AND digest = $2 FOR UPDATE",
        repository_id,
        str(digest),
    )
    return bool(found)


async def fetch_referencing_manifest(
    conn: Conn, repository_id: int, digest: Digest
) -> Digest | None:
    """A manifest of the repository (other than ``digest`` itself) that refers to ``digest``."""
    found: str | None = await conn.fetchval(
        """
        SELECT manifest_digest FROM v2_manifest_references
        WHERE repository_id = $1 AND digest = $2 AND manifest_digest <> $2
        ORDER BY manifest_digest LIMIT 1
        """,
        repository_id,
        str(digest),
    )
    return Digest.parse(found) if found is not None else None
