"""Queries on which repository holds a v1 image id (migration 0004): one per statement."""

from __future__ import annotations

from registryd.db.queries import Conn
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
