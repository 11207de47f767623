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
    """Create a user; None when the username or e-mail address is taken.

    Runs in its own (sub)transaction, so a conflict leaves a caller's transaction usable.
    """
    try:
        async with conn.transaction():
            row = await conn.fetchrow(
                """
                INSERT INTO users (username, email, password_hash, is_admin)
                VALUES ($1, $2, $3, $4)
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
        async with conn.transaction():  # a savepoint inside a caller's transaction
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


# ============================================================================
# OCI distribution (v2): repository blob links, upload sessions, manifests, tags
# ============================================================================


@dataclass(frozen=True, slots=True)
class UploadRow:
    upload_id: str
    repository_id: int
    size_bytes: int
    # Set while a request writes to the session; doubles as that request's claim token.
    busy_since: datetime | None


@dataclass(frozen=True, slots=True)
class ManifestRow:
    digest: Digest
    media_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class ReferrerRow:
    digest: Digest
    media_type: str
    size_bytes: int
    artifact_type: str | None
    annotations: dict[str, Any] | None


def _upload(row: asyncpg.Record) -> UploadRow:
    return UploadRow(
        upload_id=row["upload_id"],
        repository_id=row["repository_id"],
        size_bytes=row["size_bytes"],
        busy_since=row["busy_since"],
    )


def _manifest(row: asyncpg.Record) -> ManifestRow:
    return ManifestRow(
        digest=Digest.parse(row["digest"]), media_type=row["media_type"], body=row["body"]
    )


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


_UPLOAD_COLUMNS = "upload_id, repository_id, size_bytes, busy_since"


async def fetch_upload(conn: Conn, upload_id: str, repository_id: int) -> UploadRow | None:
    row = await conn.fetchrow(
        f"SELECT {_UPLOAD_COLUMNS} FROM v2_uploads WHERE upload_id = $1 AND repository_id = $2",
        upload_id,
        repository_id,
    )
    return _upload(row) if row is not None else None


async def delete_upload(conn: Conn, upload_id: str) -> bool:
    status = await conn.execute("DELETE FROM v2_uploads WHERE upload_id = $1", upload_id)
    return bool(status == "DELETE 1")


async def upsert_manifest(
    conn: Conn,
    repository_id: int,
    digest: Digest,
    media_type: str,
    body: bytes,
    subject: Digest | None,
    artifact_type: str | None,
    annotations: dict[str, Any] | None,
) -> None:
    """Store a manifest; the same digest again keeps the first row (same bytes)."""
    await conn.execute(
        """
        INSERT INTO v2_manifests (
            repository_id, digest, media_type, body, subject_digest, artifact_type, annotations
        ) VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (repository_id, digest) DO NOTHING
        """,
        repository_id,
        str(digest),
        media_type,
        body,
        str(subject) if subject is not None else None,
        artifact_type,
        json.dumps(annotations) if annotations is not None else None,
    )


async def insert_manifest_references(
    conn: Conn, repository_id: int, manifest: Digest, digests: list[Digest]
) -> None:
    await conn.execute(
        """
        INSERT INTO v2_manifest_references (repository_id, manifest_digest, digest)
        SELECT $1, $2, d FROM unnest($3::text[]) AS d
        ON CONFLICT DO NOTHING
        """,
        repository_id,
        str(manifest),
        [str(d) for d in digests],
    )


async def fetch_manifest(conn: Conn, repository_id: int, digest: Digest) -> ManifestRow | None:
    row = await conn.fetchrow(
        """
        SELECT digest, media_type, body FROM v2_manifests
        WHERE repository_id = $1 AND digest = $2
        """,
        repository_id,
        str(digest),
    )
    return _manifest(row) if row is not None else None


async def fetch_tagged_manifest(conn: Conn, repository_id: int, tag: str) -> ManifestRow | None:
    row = await conn.fetchrow(
        """
        SELECT m.digest, m.media_type, m.body
        FROM v2_tags t JOIN v2_manifests m
            ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
        WHERE t.repository_id = $1 AND t.tag = $2
        """,
        repository_id,
        tag,
    )
    return _manifest(row) if row is not None else None


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


async def delete_manifest(conn: Conn, repository_id: int, digest: Digest) -> bool:
    """Delete a manifest; its tags and references go with it."""
    status = await conn.execute(
        "DELETE FROM v2_manifests WHERE repository_id = $1 AND digest = $2",
        repository_id,
        str(digest),
    )
    return bool(status == "DELETE 1")


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


async def fetch_referrers(
    conn: Conn, repository_id: int, subject: Digest, artifact_type: str | None
) -> list[ReferrerRow]:
    """Manifests of the repository whose ``subject`` is ``subject``, optionally filtered."""
    rows = await conn.fetch(
        """
        SELECT digest, media_type, octet_length(body) AS size_bytes, artifact_type, annotations
        FROM v2_manifests
        WHERE repository_id = $1 AND subject_digest = $2
          AND ($3::text IS NULL OR artifact_type = $3::text)
        ORDER BY digest
        """,
        repository_id,
        str(subject),
        artifact_type,
    )
    return [
        ReferrerRow(
            digest=Digest.parse(r["digest"]),
            media_type=r["media_type"],
            size_bytes=r["size_bytes"],
            artifact_type=r["artifact_type"],
            annotations=json.loads(r["annotations"]) if r["annotations"] is not None else None,
        )
        for r in rows
    ]
