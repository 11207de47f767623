"""SQL of repositories and the v1 index's declared images (``repository_images``)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from registryd.db.conn import Conn
from registryd.names import RepositoryName


@dataclass(frozen=True, slots=True)
class RepositoryRow:
    repository_id: int
    name: RepositoryName
    description: str | None
    is_public: bool


def _repository(row: asyncpg.Record) -> RepositoryRow:
    return RepositoryRow(
        repository_id=row["repository_id"],
        name=RepositoryName(row["namespace"], row["name"]),
        description=row["description"],
        is_public=row["is_public"],
    )


async def fetch_repository(conn: Conn, name: RepositoryName) -> RepositoryRow | None:
    row = await conn.fetchrow(
        "SELECT * FROM repositories WHERE namespace = $1 AND name = $2",
        name.namespace,
        name.repository,
    )
    return _repository(row) if row is not None else None


async def ensure_repository(conn: Conn, name: RepositoryName) -> RepositoryRow:
    """Fetch the repository, creating it first if it does not exist.

    Safe under concurrency: when another transaction inserts the same name
    first, the insert does nothing and the next statement (a new snapshot in
    READ COMMITTED) sees that row.
    """
    existing = await fetch_repository(conn, name)
    if existing is not None:
        return existing
    row = await conn.fetchrow(
        """
        INSERT INTO repositories (namespace, name) VALUES ($1, $2)
        ON CONFLICT (namespace, name) DO NOTHING
        RETURNING *
        """,
        name.namespace,
        name.repository,
    )
    if row is not None:
        return _repository(row)
    created = await fetch_repository(conn, name)
    assert created is not None
    return created


async def insert_repository(
    conn: Conn, name: RepositoryName, created_by: int | None
) -> RepositoryRow | None:
    """Create the repository; None if it already exists."""
    row = await conn.fetchrow(
        """
        INSERT INTO repositories (namespace, name, created_by) VALUES ($1, $2, $3)
        ON CONFLICT (namespace, name) DO NOTHING
        RETURNING *
        """,
        name.namespace,
        name.repository,
        created_by,
    )
    return _repository(row) if row is not None else None


async def delete_repository(conn: Conn, repository_id: int) -> None:
    """Remove a repository with its tags and declared list; images stay (GC decides)."""
    await conn.execute("DELETE FROM repositories WHERE repository_id = $1", repository_id)


async def set_repository_public(conn: Conn, repository_id: int, is_public: bool) -> None:
    await conn.execute(
        "UPDATE repositories SET is_public = $2 WHERE repository_id = $1",
        repository_id,
        is_public,
    )


async def declare_images(
    conn: Conn, repository_id: int, images: list[tuple[str, str | None]]
) -> None:
    """Add (image_id, checksum) pairs; never removes, keeps a known checksum (§5.9)."""
    await conn.executemany(
        """
        INSERT INTO repository_images (repository_id, image_id, checksum) VALUES ($1, $2, $3)
        ON CONFLICT (repository_id, image_id)
        DO UPDATE SET checksum = COALESCE(EXCLUDED.checksum, repository_images.checksum)
        """,
        [(repository_id, image_id, checksum) for image_id, checksum in images],
    )


async def fetch_declared_images(conn: Conn, repository_id: int) -> list[tuple[str, str | None]]:
    """(image_id, checksum) declared for the repository, the recorded payload checksum if known."""
    rows = await conn.fetch(
        """
        SELECT d.image_id, COALESCE(d.checksum, i.checksum_payload) AS checksum
        FROM repository_images d LEFT JOIN v1_images i USING (image_id)
        WHERE d.repository_id = $1
        ORDER BY d.declared_seq
        """,
        repository_id,
    )
    return [(r["image_id"], r["checksum"]) for r in rows]


async def fetch_repositories_referencing(
    conn: Conn, image_id: str
) -> list[tuple[RepositoryRow, bool]]:
    """Repositories that declared or tag the image, each with whether it declared it."""
    rows = await conn.fetch(
        """
        SELECT r.*, EXISTS (
            SELECT 1 FROM repository_images d
            WHERE d.repository_id = r.repository_id AND d.image_id = $1
        ) AS declared
        FROM repositories r WHERE r.repository_id IN (
            SELECT repository_id FROM repository_images WHERE image_id = $1
            UNION
            SELECT repository_id FROM v1_tags WHERE image_id = $1
        )
        """,
        image_id,
    )
    return [(_repository(r), r["declared"]) for r in rows]


async def search_repositories(
    conn: Conn,
    term: str,
    viewer: str | None,
    viewer_is_admin: bool,
    include_public: bool,
    limit: int,
    offset: int,
) -> tuple[int, list[RepositoryRow]]:
    """Repositories whose name or description contains ``term`` that the viewer may see.

    Returns (total matches, one page of them) ordered by name.
    """
    pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    visible = """
        ((namespace || '/' || name) ILIKE $1 OR description ILIKE $1)
        AND ($3 OR ($4 AND is_public) OR namespace = $2)
    """
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM repositories WHERE {visible}",
        pattern,
        viewer,
        viewer_is_admin,
        include_public,
    )
    rows = await conn.fetch(
        f"SELECT * FROM repositories WHERE {visible} ORDER BY namespace, name LIMIT $5 OFFSET $6",
        pattern,
        viewer,
        viewer_is_admin,
        include_public,
        limit,
        offset,
    )
    return total, [_repository(r) for r in rows]


async def fetch_repositories_page(conn: Conn, last: str | None, limit: int) -> list[RepositoryRow]:
    """Up to ``limit`` repositories named after ``last`` (``namespace/name``, exclusive),
    in byte order of that name."""
    rows = await conn.fetch(
        """
        SELECT * FROM repositories
        WHERE $1::text IS NULL OR (namespace || '/' || name) COLLATE "C" > $1::text COLLATE "C"
        ORDER BY (namespace || '/' || name) COLLATE "C" LIMIT $2
        """,
        last,
        limit,
    )
    return [_repository(r) for r in rows]
