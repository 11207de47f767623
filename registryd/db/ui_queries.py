"""Read models of the web UI: one query per page part, each answering a whole page at once.

Visibility is part of every listing query (the same rule for reads as
``access.decision.account_may``), so a row the viewer may not read never leaves the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from registryd.db.conn import Conn
from registryd.jsonbody import stored_object
from registryd.names import RepositoryName

INDEX_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
V1_IMAGE_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who looks, as the catalog's visibility filter needs it."""

    username: str | None
    sees_everything: bool  # admin, or access checks are off
    sees_public: bool  # signed in, or anonymous pulls are allowed


@dataclass(frozen=True, slots=True)
class RepositorySummary:
    """A catalog row: the repository with its numbers."""

    repository_id: int
    name: RepositoryName
    description: str | None
    is_public: bool
    has_v1: bool  # v1 tags or declared v1 images
    has_v2: bool  # v2 manifests
    tag_count: int
    last_push: datetime | None
    size_bytes: int

    @property
    def origins(self) -> list[str]:
        return [origin for origin, has in (("v1", self.has_v1), ("v2", self.has_v2)) if has]


@dataclass(frozen=True, slots=True)
class RepositoryHeader:
    """What a repository's own pages need besides their rows: cheap whatever its size."""

    repository_id: int
    name: RepositoryName
    description: str | None
    is_public: bool
    has_v1: bool
    has_v2: bool

    @property
    def origins(self) -> list[str]:
        return [origin for origin, has in (("v1", self.has_v1), ("v2", self.has_v2)) if has]


def _like(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


_ORIGINS = """
    (EXISTS (SELECT 1 FROM v1_tags t WHERE t.repository_id = r.repository_id)
     OR EXISTS (SELECT 1 FROM repository_images d WHERE d.repository_id = r.repository_id))
        AS has_v1,
    EXISTS (SELECT 1 FROM v2_manifests m WHERE m.repository_id = r.repository_id) AS has_v2
"""

# Per-repository numbers, for a row ``r`` of repositories. The size counts each distinct
# blob once: v2 blobs linked to the repository, plus the layers of its v1 images (declared
# ones and the ancestry of its tags) that are not among those.
_STATS = f"""
    {_ORIGINS},
    (SELECT count(*) FROM v1_tags t WHERE t.repository_id = r.repository_id)
        + (SELECT count(*) FROM v2_tags t WHERE t.repository_id = r.repository_id) AS tag_count,
    GREATEST(
        (SELECT max(t.updated_at) FROM v1_tags t WHERE t.repository_id = r.repository_id),
        (SELECT max(t.updated_at) FROM v2_tags t WHERE t.repository_id = r.repository_id),
        (SELECT max(m.created_at) FROM v2_manifests m WHERE m.repository_id = r.repository_id)
    ) AS last_push,
    ((SELECT coalesce(sum(b.size_bytes), 0)
      FROM v2_repository_blobs l JOIN blobs b USING (digest)
      WHERE l.repository_id = r.repository_id)
     + (SELECT coalesce(sum(b.size_bytes), 0) FROM blobs b WHERE b.digest IN (
            SELECT i.layer_digest FROM v1_images i WHERE i.image_id IN (
                SELECT d.image_id FROM repository_images d
                WHERE d.repository_id = r.repository_id
                UNION
                SELECT unnest(ti.ancestry) FROM v1_tags t JOIN v1_images ti USING (image_id)
                WHERE t.repository_id = r.repository_id
            )
        ) AND NOT EXISTS (
            SELECT 1 FROM v2_repository_blobs l
            WHERE l.repository_id = r.repository_id AND l.digest = b.digest
        ))
    )::bigint AS size_bytes
"""


def _summary(row: asyncpg.Record) -> RepositorySummary:
    return RepositorySummary(
        repository_id=row["repository_id"],
        name=RepositoryName(row["namespace"], row["name"]),
        description=row["description"],
        is_public=row["is_public"],
        has_v1=row["has_v1"],
        has_v2=row["has_v2"],
        tag_count=row["tag_count"],
        last_push=row["last_push"],
        size_bytes=row["size_bytes"],
    )


async def fetch_catalog_page(
    conn: Conn,
    viewer: Viewer,
    term: str,
    namespace: str | None,
    order_by_size: bool,
    limit: int,
    offset: int,
) -> tuple[int, list[RepositorySummary]]:
    """(total matches, one page) of repositories the viewer may read, with their numbers.

    ``term`` filters on name and description; ``namespace`` keeps one namespace only.
    """
    order = "size_bytes DESC, namespace, name" if order_by_size else "namespace, name"
    rows = await conn.fetch(
        f"""
        WITH page AS (
            SELECT r.*, count(*) OVER () AS total FROM repositories r
            WHERE ($1 = '' OR (r.namespace || '/' || r.name) ILIKE $2 OR r.description ILIKE $2)
              AND ($4 OR ($5 AND r.is_public) OR r.namespace = $3)
              AND ($6::text IS NULL OR r.namespace = $6::text)
            ORDER BY r.namespace, r.name
            {"" if order_by_size else "LIMIT $7 OFFSET $8"}
        )
        SELECT r.*, {_STATS} FROM page r
        ORDER BY {order}
        {"LIMIT $7 OFFSET $8" if order_by_size else ""}
        """,
        term,
        _like(term),
        viewer.username,
        viewer.sees_everything,
        viewer.sees_public,
        namespace,
        limit,
        offset,
    )
    total = rows[0]["total"] if rows else 0
    return total, [_summary(r) for r in rows]


async def fetch_repository_header(conn: Conn, name: RepositoryName) -> RepositoryHeader | None:
    row = await conn.fetchrow(
        f"SELECT r.*, {_ORIGINS} FROM repositories r WHERE r.namespace = $1 AND r.name = $2",
        name.namespace,
        name.repository,
    )
    if row is None:
        return None
    return RepositoryHeader(
        repository_id=row["repository_id"],
        name=RepositoryName(row["namespace"], row["name"]),
        description=row["description"],
        is_public=row["is_public"],
        has_v1=row["has_v1"],
        has_v2=row["has_v2"],
    )


@dataclass(frozen=True, slots=True)
class TagRow:
    tag: str
    origin: str  # "v1" or "v2"
    reference: str  # a manifest digest (v2) or an image id (v1)
    media_type: str
    pushed_at: datetime
    size_bytes: int
    index: dict[str, Any] | None  # the parsed body of an index, for its platforms


async def fetch_tags_page(
    conn: Conn, repository_id: int, term: str, limit: int, offset: int
) -> tuple[int, list[TagRow]]:
    """(total, one page) of the repository's v1 and v2 tags in byte order of the tag.

    The page is cut first; sizes (distinct blobs of the image, or of every platform of an
    index; a v1 image's layers with its ancestry) are computed for its rows only.
    """
    rows = await conn.fetch(
        """
        WITH all_tags AS (
            SELECT tag, 'v2' AS origin, manifest_digest AS reference, updated_at
            FROM v2_tags WHERE repository_id = $1
            UNION ALL
            SELECT tag COLLATE "C", 'v1', image_id, updated_at
            FROM v1_tags WHERE repository_id = $1
        ), page AS (
            SELECT *, count(*) OVER () AS total FROM all_tags
            WHERE $2 = '' OR tag ILIKE $3
            ORDER BY tag, origin LIMIT $4 OFFSET $5
        )
        SELECT p.*, m.media_type,
            CASE WHEN m.media_type = ANY($6::text[]) THEN m.body END AS index_body,
            CASE WHEN p.origin = 'v2' THEN (
                SELECT coalesce(sum(b.size_bytes), 0) FROM blobs b WHERE b.digest IN (
                    SELECT x.digest FROM v2_manifest_references x
                    WHERE x.repository_id = $1 AND x.manifest_digest = p.reference
                    UNION
                    SELECT y.digest FROM v2_manifest_references x
                    JOIN v2_manifest_references y
                        ON y.repository_id = x.repository_id AND y.manifest_digest = x.digest
                    WHERE x.repository_id = $1 AND x.manifest_digest = p.reference
                )
            ) ELSE (
                SELECT coalesce(sum(a.layer_size_bytes), 0) FROM v1_images i
                JOIN v1_images a ON a.image_id = ANY (i.ancestry)
                WHERE i.image_id = p.reference
            ) END::bigint AS size_bytes
        FROM page p
        LEFT JOIN v2_manifests m
            ON p.origin = 'v2' AND m.repository_id = $1 AND m.digest = p.reference
        ORDER BY p.tag, p.origin
        """,
        repository_id,
        term,
        _like(term),
        limit,
        offset,
        list(INDEX_MEDIA_TYPES),
    )
    total = rows[0]["total"] if rows else 0
    return total, [
        TagRow(
            tag=r["tag"],
            origin=r["origin"],
            reference=r["reference"],
            media_type=r["media_type"] or V1_IMAGE_MEDIA_TYPE,
            pushed_at=r["updated_at"],
            size_bytes=r["size_bytes"],
            index=stored_object(r["index_body"]),
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class ManifestDetail:
    digest: str
    media_type: str
    body: bytes
    created_at: datetime
    subject_digest: str | None
    artifact_type: str | None
    tags: list[str]


async def fetch_manifest_detail(
    conn: Conn, repository_id: int, digest: str
) -> ManifestDetail | None:
    """A manifest with the tags pointing at it (at most 100 of them)."""
    row = await conn.fetchrow(
        """
        SELECT m.*, ARRAY(
            SELECT t.tag FROM v2_tags t
            WHERE t.repository_id = m.repository_id AND t.manifest_digest = m.digest
            ORDER BY t.tag LIMIT 100
        ) AS tags
        FROM v2_manifests m WHERE m.repository_id = $1 AND m.digest = $2
        """,
        repository_id,
        digest,
    )
    if row is None:
        return None
    return ManifestDetail(
        digest=row["digest"],
        media_type=row["media_type"],
        body=row["body"],
        created_at=row["created_at"],
        subject_digest=row["subject_digest"],
        artifact_type=row["artifact_type"],
        tags=list(row["tags"]),
    )


@dataclass(frozen=True, slots=True)
class V1ImageDetail:
    image_id: str
    json: bytes
    size_bytes: int | None
    created_at: datetime


async def fetch_v1_ancestry(
    conn: Conn, repository_id: int, image_id: str
) -> list[V1ImageDetail] | None:
    """The image and its ancestors (image first), or None unless the repository declared
    the image or one of its tags has it in its ancestry."""
    rows = await conn.fetch(
        """
        WITH target AS (
            SELECT i.* FROM v1_images i WHERE i.image_id = $2 AND i.state = 'complete' AND (
                EXISTS (SELECT 1 FROM repository_images d
                        WHERE d.repository_id = $1 AND d.image_id = $2)
                OR EXISTS (SELECT 1 FROM v1_tags t JOIN v1_images ti USING (image_id)
                           WHERE t.repository_id = $1 AND $2 = ANY (ti.ancestry))
            )
        )
        SELECT a.image_id, a.json, a.layer_size_bytes, a.created_at, n.pos
        FROM target, unnest(target.ancestry) WITH ORDINALITY AS n (image_id, pos)
        JOIN v1_images a ON a.image_id = n.image_id
        ORDER BY n.pos
        """,
        repository_id,
        image_id,
    )
    if not rows:
        return None
    return [
        V1ImageDetail(r["image_id"], r["json"], r["layer_size_bytes"], r["created_at"])
        for r in rows
    ]


# Accounts (admin) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserSummary:
    username: str
    email: str | None
    is_admin: bool
    is_active: bool
    created_at: datetime


async def fetch_users_page(conn: Conn, limit: int, offset: int) -> tuple[int, list[UserSummary]]:
    rows = await conn.fetch(
        """
        SELECT username, email, is_admin, is_active, created_at, count(*) OVER () AS total
        FROM users ORDER BY username LIMIT $1 OFFSET $2
        """,
        limit,
        offset,
    )
    total = rows[0]["total"] if rows else 0
    return total, [
        UserSummary(r["username"], r["email"], r["is_admin"], r["is_active"], r["created_at"])
        for r in rows
    ]


async def set_user_flags(
    conn: Conn, username: str, *, is_active: bool | None = None, is_admin: bool | None = None
) -> bool:
    """Change the given flags; False if there is no such user."""
    status = await conn.execute(
        """
        UPDATE users SET is_active = coalesce($2, is_active), is_admin = coalesce($3, is_admin),
            updated_at = now()
        WHERE username = $1
        """,
        username,
        is_active,
        is_admin,
    )
    return bool(status == "UPDATE 1")
