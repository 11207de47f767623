"""SQL of v2 manifests, their references and referrers (``v2_manifests``, ``v2_tags``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from registryd.db.conn import Conn
from registryd.digest import Digest


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


def _manifest(row: asyncpg.Record) -> ManifestRow:
    return ManifestRow(
        digest=Digest.parse(row["digest"]), media_type=row["media_type"], body=row["body"]
    )


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


async def delete_manifest(conn: Conn, repository_id: int, digest: Digest) -> bool:
    """Delete a manifest; its tags and references go with it."""
    status = await conn.execute(
        "DELETE FROM v2_manifests WHERE repository_id = $1 AND digest = $2",
        repository_id,
        str(digest),
    )
    return bool(status == "DELETE 1")


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
