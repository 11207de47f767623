"""Queries on which repository holds a v1 image id (migration 0004): one per statement."""

from __future__ import annotations

from registryd.db.conn import Conn
from registryd.names import ImageId, RepositoryName


async def fetch_image_owner(conn: Conn, image_id: ImageId) -> RepositoryName | None:
    """The repository holding ``image_id``, or None when nobody does."""
    row = await conn.fetchrow(
        "SELECT namespace, name FROM v1_image_owners WHERE image_id = $1", image_id
    )
    return RepositoryName(row["namespace"], row["name"]) if row is not None else None


async def claim_image_owner(conn: Conn, image_id: ImageId, owner: RepositoryName) -> None:
    """Make ``owner`` the holder of ``image_id`` unless a repository already is.

    Under concurrency exactly one claim wins: a second insert waits for the
    first to commit, then does nothing; the caller reads the winner next.
    """
    await conn.execute(
        """
        INSERT INTO v1_image_owners (image_id, namespace, name) VALUES ($1, $2, $3)
        ON CONFLICT (image_id) DO NOTHING
        """,
        image_id,
        owner.namespace,
        owner.repository,
    )


async def move_image_owner(conn: Conn, image_id: ImageId, owner: RepositoryName) -> None:
    """Hand ``image_id`` to another repository (whose caller may write both)."""
    await conn.execute(
        """
        UPDATE v1_image_owners SET namespace = $2, name = $3, claimed_at = now()
        WHERE image_id = $1
        """,
        image_id,
        owner.namespace,
        owner.repository,
    )


# Batches, for declarations of a whole image list ------------------------------------


async def fetch_complete_images(conn: Conn, image_ids: list[ImageId]) -> set[ImageId]:
    """Which of ``image_ids`` are complete images."""
    rows = await conn.fetch(
        "SELECT image_id FROM v1_images WHERE image_id = ANY($1::text[]) AND state = 'complete'",
        image_ids,
    )
    return {r["image_id"] for r in rows}


async def fetch_referenced_in(
    conn: Conn, repository_id: int, image_ids: list[ImageId]
) -> set[ImageId]:
    """Which of ``image_ids`` the repository already declares or tags."""
    rows = await conn.fetch(
        """
        SELECT image_id FROM repository_images
        WHERE repository_id = $1 AND image_id = ANY($2::text[])
        UNION
        SELECT image_id FROM v1_tags WHERE repository_id = $1 AND image_id = ANY($2::text[])
        """,
        repository_id,
        image_ids,
    )
    return {r["image_id"] for r in rows}


async def claim_image_owners(conn: Conn, image_ids: list[ImageId], owner: RepositoryName) -> None:
    """``claim_image_owner`` for many ids, in sorted order (concurrent claims cannot deadlock)."""
    await conn.execute(
        """
        INSERT INTO v1_image_owners (image_id, namespace, name)
        SELECT image_id, $2, $3 FROM unnest($1::text[]) AS image_id ORDER BY image_id
        ON CONFLICT (image_id) DO NOTHING
        """,
        image_ids,
        owner.namespace,
        owner.repository,
    )


async def fetch_image_owners(conn: Conn, image_ids: list[ImageId]) -> dict[ImageId, RepositoryName]:
    rows = await conn.fetch(
        "SELECT image_id, namespace, name FROM v1_image_owners WHERE image_id = ANY($1::text[])",
        image_ids,
    )
    return {r["image_id"]: RepositoryName(r["namespace"], r["name"]) for r in rows}


async def move_image_owners(conn: Conn, image_ids: list[ImageId], owner: RepositoryName) -> None:
    await conn.execute(
        """
        UPDATE v1_image_owners SET namespace = $2, name = $3, claimed_at = now()
        WHERE image_id = ANY($1::text[])
        """,
        image_ids,
        owner.namespace,
        owner.repository,
    )
