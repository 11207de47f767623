"""One async function per SQL statement. Each takes a connection and returns dataclasses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from registryd.digest import Digest
from registryd.names import ImageId, RepositoryName

# A plain connection or one borrowed from the pool.
Conn = asyncpg.Connection | PoolConnectionProxy

UPLOADING = "uploading"
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


@dataclass(frozen=True, slots=True)
class RepositoryRow:
    repository_id: int
    name: RepositoryName
    description: str | None
    is_public: bool


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


def _repository(row: asyncpg.Record) -> RepositoryRow:
    return RepositoryRow(
        repository_id=row["repository_id"],
        name=RepositoryName(row["namespace"], row["name"]),
        description=row["description"],
        is_public=row["is_public"],
    )


# Blobs ----------------------------------------------------------------------


async def insert_blob(conn: Conn, digest: Digest, size_bytes: int) -> None:
    """Record a committed blob; a second insert of the same digest is a no-op."""
    await conn.execute(
        "INSERT INTO blobs (digest, size_bytes) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
        str(digest),
        size_bytes,
    )


# v1 images ------------------------------------------------------------------


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


# Repositories -----------------------------------------------------------------


async def fetch_repository(conn: Conn, name: RepositoryName) -> RepositoryRow | None:
    row = await conn.fetchrow(
        "SELECT * FROM repositories WHERE namespace = $1 AND name = $2",
        name.namespace,
        name.repository,
    )
    return _repository(row) if row is not None else None


async def ensure_repository(conn: Conn, name: RepositoryName) -> RepositoryRow:
    """Fetch the repository, creating it first if it does not exist."""
    row = await conn.fetchrow(
        """
        WITH inserted AS (
            INSERT INTO repositories (namespace, name) VALUES ($1, $2)
            ON CONFLICT (namespace, name) DO NOTHING
            RETURNING *
        )
        SELECT * FROM inserted
        UNION ALL
        SELECT * FROM repositories WHERE namespace = $1 AND name = $2
        LIMIT 1
        """,
        name.namespace,
        name.repository,
    )
    assert row is not None
    return _repository(row)


# v1 tags ----------------------------------------------------------------------


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


# Users --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: int
    username: str
    email: str | None
    password_hash: str
    is_admin: bool
    is_active: bool


def _user(row: asyncpg.Record) -> UserRow:
    return UserRow(
        user_id=row["user_id"],
        username=row["username"],
        email=row["email"],
        password_hash=row["password_hash"],
        is_admin=row["is_admin"],
        is_active=row["is_active"],
    )


async def fetch_user(conn: Conn, username: str) -> UserRow | None:
    row = await conn.fetchrow("SELECT * FROM users WHERE username = $1", username)
    return _user(row) if row is not None else None


async def insert_user(
    conn: Conn, username: str, email: str | None, password_hash: str, is_admin: bool
) -> UserRow | None:
    """Create a user; None when the username or e-mail address is taken."""
    try:
        row = await conn.fetchrow(
            """
            INSERT INTO users (username, email, password_hash, is_admin) VALUES ($1, $2, $3, $4)
            RETURNING *
            """,
            username,
            email,
            password_hash,
            is_admin,
        )
    except asyncpg.UniqueViolationError:
        return None
    assert row is not None
    return _user(row)


async def update_user(
    conn: Conn,
    username: str,
    *,
    email: str | None = None,
    password_hash: str | None = None,
    is_admin: bool | None = None,
) -> bool:
    """Change the given fields; False when the e-mail is taken by another account."""
    try:
        await conn.execute(
            """
            UPDATE users SET email = COALESCE($2, email),
                             password_hash = COALESCE($3, password_hash),
                             is_admin = COALESCE($4, is_admin),
                             updated_at = now()
            WHERE username = $1
            """,
            username,
            email,
            password_hash,
            is_admin,
        )
    except asyncpg.UniqueViolationError:
        return False
    return True


# Repository index ---------------------------------------------------------------


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
