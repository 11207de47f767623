"""SQL of garbage collection: review queues, liveness checks under row locks, deletions.

The liveness rules live here, as the ``WHERE`` clauses of the deleting statements.
Each deleting statement runs in the transaction that first locked the candidates
(``FOR UPDATE SKIP LOCKED``) and, being a new statement under READ COMMITTED,
sees every reference committed before it got those locks. Writers that create a
reference hold the referenced row (``FOR SHARE`` or a foreign-key check), so
there is no reference the check could miss. Seconds are ``float`` parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from registryd.db.conn import Conn
from registryd.db.process_owner import owner_alive_sql
from registryd.digest import Digest

# Reviews of rows another transaction holds are retried this much later.
_BUSY_RETRY = "make_interval(secs => 5)"


@dataclass(frozen=True, slots=True)
class Review:
    """A queued review: the key of what to look at, and the event version it was read at."""

    repository_id: int  # 0 for queues keyed by digest or image id alone
    key: str
    seq: int


@dataclass(frozen=True, slots=True)
class DeletedBlob:
    digest: str
    size_bytes: int


# Writer hooks ------------------------------------------------------------------


async def insert_blob_row(conn: Conn, digest: Digest, size_bytes: int) -> None:
    """Insert the blob's row unless it exists (waits while a collector is deleting it)."""
    await conn.execute(
        "INSERT INTO blobs (digest, size_bytes) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
        str(digest),
        size_bytes,
    )


async def share_blob_row(conn: Conn, digest: Digest) -> bool:
    """Lock the blob's row against deletion until the transaction ends; False if it is gone
    or its file is still to be removed."""
    found = await conn.fetchval(
        """
        SELECT 1 FROM blobs b WHERE b.digest = $1
          AND NOT EXISTS (SELECT 1 FROM blob_deletions d WHERE d.digest = b.digest)
        FOR SHARE OF b
        """,
        str(digest),
    )
    return found is not None


async def lock_blob_row(conn: Conn, digest: Digest) -> bool:
    """Lock the blob's row against deletion until the transaction ends; False if it is gone."""
    found = await conn.fetchval("SELECT 1 FROM blobs WHERE digest = $1 FOR SHARE", str(digest))
    return found is not None


async def share_v1_image_key(conn: Conn, image_id: str) -> bool:
    """Lock the v1 image's row against deletion (``FOR KEY SHARE``, what a foreign-key
    check takes) until the transaction ends; False if it is gone. Waits while a
    collector is deleting it, and then sees it gone."""
    found = await conn.fetchval(
        "SELECT 1 FROM v1_images WHERE image_id = $1 FOR KEY SHARE", image_id
    )
    return found is not None


async def cancel_blob_deletion(conn: Conn, digest: Digest) -> None:
    """Take back a pending file removal; waits while a collector is removing the file."""
    await conn.execute("DELETE FROM blob_deletions WHERE digest = $1", str(digest))


async def link_blob_fresh(conn: Conn, repository_id: int, digest: Digest) -> None:
    """Link the blob into the repository as new, also when it was linked long ago: a client
    that just pushed or mounted it gets the whole grace period to refer to it."""
    await conn.execute(
        """
        INSERT INTO v2_repository_blobs (repository_id, digest) VALUES ($1, $2)
        ON CONFLICT (repository_id, digest) DO UPDATE SET created_at = now()
        """,
        repository_id,
        str(digest),
    )


async def share_repository_links(conn: Conn, repository_id: int, digests: list[Digest]) -> None:
    """Lock the repository's links to ``digests`` against collection until the transaction ends."""
    await conn.execute(
        """
        SELECT 1 FROM v2_repository_blobs
        WHERE repository_id = $1 AND digest = ANY($2::text[])
        FOR SHARE
        """,
        repository_id,
        [str(d) for d in digests],
    )


async def share_manifests(conn: Conn, repository_id: int, digests: list[Digest]) -> None:
    """Lock the repository's manifests ``digests`` against collection until the transaction ends."""
    await conn.execute(
        """
        SELECT 1 FROM v2_manifests
        WHERE repository_id = $1 AND digest = ANY($2::text[])
        FOR SHARE
        """,
        repository_id,
        [str(d) for d in digests],
    )


async def refresh_manifest(conn: Conn, repository_id: int, digest: Digest) -> None:
    """A re-pushed manifest counts as new again (and is locked until the transaction ends)."""
    await conn.execute(
        "UPDATE v2_manifests SET created_at = now() WHERE repository_id = $1 AND digest = $2",
        repository_id,
        str(digest),
    )


# Review queues -----------------------------------------------------------------


async def due_blob_reviews(conn: Conn, limit: int) -> list[Review]:
    rows = await conn.fetch(
        """
        SELECT digest, seq FROM gc_blob_reviews WHERE review_after <= now()
        ORDER BY review_after LIMIT $1
        """,
        limit,
    )
    return [Review(0, r["digest"], r["seq"]) for r in rows]


async def due_link_reviews(conn: Conn, limit: int) -> list[Review]:
    rows = await conn.fetch(
        """
        SELECT repository_id, digest, seq FROM gc_link_reviews WHERE review_after <= now()
        ORDER BY review_after LIMIT $1
        """,
        limit,
    )
    return [Review(r["repository_id"], r["digest"], r["seq"]) for r in rows]


async def due_manifest_reviews(conn: Conn, limit: int) -> list[Review]:
    rows = await conn.fetch(
        """
        SELECT repository_id, digest, seq FROM gc_manifest_reviews WHERE review_after <= now()
        ORDER BY review_after LIMIT $1
        """,
        limit,
    )
    return [Review(r["repository_id"], r["digest"], r["seq"]) for r in rows]


async def due_v1_image_reviews(conn: Conn, limit: int) -> list[Review]:
    rows = await conn.fetch(
        """
        SELECT image_id, seq FROM gc_v1_image_reviews WHERE review_after <= now()
        ORDER BY review_after LIMIT $1
        """,
        limit,
    )
    return [Review(0, r["image_id"], r["seq"]) for r in rows]


async def unpark_manifest_reviews(conn: Conn) -> int:
    """Untagged manifests parked while ``gc_untagged_seconds`` was 0 are reviewed again."""
    status = await conn.execute(
        "UPDATE gc_manifest_reviews SET review_after = now() WHERE review_after = 'infinity'"
    )
    return int(status.split()[-1])


async def pending_reviews(conn: Conn) -> int:
    """Reviews that are due now, over all queues (0: the collector caught up)."""
    count: int = await conn.fetchval(
        """
        SELECT (SELECT count(*) FROM gc_blob_reviews WHERE review_after <= now())
             + (SELECT count(*) FROM gc_link_reviews WHERE review_after <= now())
             + (SELECT count(*) FROM gc_manifest_reviews WHERE review_after <= now())
             + (SELECT count(*) FROM gc_v1_image_reviews WHERE review_after <= now())
        """
    )
    return count


async def pending_file_removals(conn: Conn) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM blob_deletions")
    return count


# Blobs -------------------------------------------------------------------------


async def lock_blobs(conn: Conn, digests: list[str]) -> list[str]:
    rows = await conn.fetch(
        "SELECT digest FROM blobs WHERE digest = ANY($1::text[]) FOR UPDATE SKIP LOCKED",
        digests,
    )
    return [r["digest"] for r in rows]


async def missing_blobs(conn: Conn, digests: list[str]) -> list[str]:
    rows = await conn.fetch(
        """
        SELECT d FROM unnest($1::text[]) AS d
        WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = d)
        """,
        digests,
    )
    return [r["d"] for r in rows]


async def delete_dead_blobs(conn: Conn, digests: list[str], grace: float) -> list[DeletedBlob]:
    """Delete the (locked) blobs nothing refers to and older than ``grace``; record their files
    as pending removal. The liveness rule of blobs."""
    rows = await conn.fetch(
        """
        WITH dead AS (
            DELETE FROM blobs b
            WHERE b.digest = ANY($1::text[])
              AND b.created_at <= now() - make_interval(secs => $2::float8)
              AND NOT EXISTS (SELECT 1 FROM v2_repository_blobs l WHERE l.digest = b.digest)
              AND NOT EXISTS (SELECT 1 FROM v1_images i WHERE i.layer_digest = b.digest)
              AND NOT EXISTS (SELECT 1 FROM v2_manifest_references r WHERE r.digest = b.digest)
            RETURNING b.digest, b.size_bytes
        )
        INSERT INTO blob_deletions (digest, size_bytes)
        SELECT digest, size_bytes FROM dead
        ON CONFLICT (digest) DO UPDATE SET size_bytes = EXCLUDED.size_bytes, deleted_at = now()
        RETURNING digest, size_bytes
        """,
        digests,
        grace,
    )
    return [DeletedBlob(r["digest"], r["size_bytes"]) for r in rows]


async def finish_blob_reviews(conn: Conn, reviews: list[Review], grace: float) -> None:
    """Close reviews whose event was not superseded; a young blob is looked at again later."""
    await conn.execute(
        """
        WITH seen AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS s (digest, seq)),
        young AS (
            SELECT b.digest, b.created_at + make_interval(secs => $3::float8) AS until
            FROM blobs b JOIN seen USING (digest)
            WHERE b.created_at + make_interval(secs => $3::float8) > now()
        ),
        later AS (
            UPDATE gc_blob_reviews q SET review_after = y.until
            FROM young y, seen s
            WHERE q.digest = y.digest AND s.digest = q.digest AND q.seq = s.seq
        )
        DELETE FROM gc_blob_reviews q USING seen s
        WHERE q.digest = s.digest AND q.seq = s.seq
          AND NOT EXISTS (SELECT 1 FROM young y WHERE y.digest = q.digest)
        """,
        [r.key for r in reviews],
        [r.seq for r in reviews],
        grace,
    )


async def postpone_blob_reviews(conn: Conn, digests: list[str]) -> None:
    await conn.execute(
        f"UPDATE gc_blob_reviews SET review_after = now() + {_BUSY_RETRY} "
        "WHERE digest = ANY($1::text[])",
        digests,
    )


async def lock_pending_deletions(conn: Conn, limit: int) -> list[DeletedBlob]:
    """Pending file removals to do now, locked: a writer reviving one waits for us."""
    rows = await conn.fetch(
        """
        SELECT d.digest, d.size_bytes FROM blob_deletions d
        WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = d.digest)
        ORDER BY d.deleted_at LIMIT $1
        FOR UPDATE OF d SKIP LOCKED
        """,
        limit,
    )
    return [DeletedBlob(r["digest"], r["size_bytes"]) for r in rows]


async def forget_pending_deletions(conn: Conn, digests: list[str]) -> None:
    await conn.execute("DELETE FROM blob_deletions WHERE digest = ANY($1::text[])", digests)


async def drop_revived_deletions(conn: Conn) -> int:
    """Pending removals whose blob has a row again (committed by some writer) are void."""
    status = await conn.execute(
        """
        DELETE FROM blob_deletions d
        WHERE EXISTS (SELECT 1 FROM blobs b WHERE b.digest = d.digest)
        """
    )
    return int(status.split()[-1])


# Repository links ------------------------------------------------------------------


async def lock_links(conn: Conn, reviews: list[Review]) -> list[Review]:
    rows = await conn.fetch(
        """
        SELECT l.repository_id, l.digest FROM v2_repository_blobs l
        JOIN unnest($1::bigint[], $2::text[]) AS c (repository_id, digest)
            ON l.repository_id = c.repository_id AND l.digest = c.digest
        FOR UPDATE OF l SKIP LOCKED
        """,
        [r.repository_id for r in reviews],
        [r.key for r in reviews],
    )
    locked = {(r["repository_id"], r["digest"]) for r in rows}
    return [r for r in reviews if (r.repository_id, r.key) in locked]


async def missing_links(conn: Conn, reviews: list[Review]) -> list[Review]:
    rows = await conn.fetch(
        """
        SELECT c.repository_id, c.digest FROM unnest($1::bigint[], $2::text[])
            AS c (repository_id, digest)
        WHERE NOT EXISTS (
            SELECT 1 FROM v2_repository_blobs l
            WHERE l.repository_id = c.repository_id AND l.digest = c.digest
        )
        """,
        [r.repository_id for r in reviews],
        [r.key for r in reviews],
    )
    missing = {(r["repository_id"], r["digest"]) for r in rows}
    return [r for r in reviews if (r.repository_id, r.key) in missing]


async def delete_dead_links(conn: Conn, reviews: list[Review], grace: float) -> int:
    """Delete the (locked) links no manifest of their repository refers to, older than
    ``grace``. The liveness rule of links: a layer pushed before its manifest survives."""
    status = await conn.execute(
        """
        DELETE FROM v2_repository_blobs l
        USING unnest($1::bigint[], $2::text[]) AS c (repository_id, digest)
        WHERE l.repository_id = c.repository_id AND l.digest = c.digest
          AND l.created_at <= now() - make_interval(secs => $3::float8)
          AND NOT EXISTS (
              SELECT 1 FROM v2_manifest_references r
              WHERE r.repository_id = l.repository_id AND r.digest = l.digest
          )
        """,
        [r.repository_id for r in reviews],
        [r.key for r in reviews],
        grace,
    )
    return int(status.split()[-1])


async def finish_link_reviews(conn: Conn, reviews: list[Review], grace: float) -> None:
    await conn.execute(
        """
        WITH seen AS (
            SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])
                AS s (repository_id, digest, seq)
        ),
        young AS (
            SELECT l.repository_id, l.digest,
                l.created_at + make_interval(secs => $4::float8) AS until
            FROM v2_repository_blobs l JOIN seen USING (repository_id, digest)
            WHERE l.created_at + make_interval(secs => $4::float8) > now()
        ),
        later AS (
            UPDATE gc_link_reviews q SET review_after = y.until
            FROM young y, seen s
            WHERE (q.repository_id, q.digest) = (y.repository_id, y.digest)
              AND (s.repository_id, s.digest) = (q.repository_id, q.digest) AND q.seq = s.seq
        )
        DELETE FROM gc_link_reviews q USING seen s
        WHERE (q.repository_id, q.digest) = (s.repository_id, s.digest) AND q.seq = s.seq
          AND NOT EXISTS (
              SELECT 1 FROM young y
              WHERE (y.repository_id, y.digest) = (q.repository_id, q.digest)
          )
        """,
        [r.repository_id for r in reviews],
        [r.key for r in reviews],
        [r.seq for r in reviews],
        grace,
    )


async def postpone_link_reviews(conn: Conn, reviews: list[Review]) -> None:
    await conn.execute(
        f"""
        UPDATE gc_link_reviews q SET review_after = now() + {_BUSY_RETRY}
        FROM unnest($1::bigint[], $2::text[]) AS c (repository_id, digest)
        WHERE (q.repository_id, q.digest) = (c.repository_id, c.digest)
        """,
        [r.repository_id for r in reviews],
        [r.key for r in reviews],
    )


# Manifests ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeletedManifest:
    repository: str
    digest: str


async def lock_manifests(conn: Conn, reviews: list[Review]) -> list[Review]:
    rows = await conn.fetch(
        """
        SELECT m.repository_id, m.digest FROM v2_manifests m
        JOIN unnest($1::bigint[], $2::text[]) AS c (repository_id, digest)
            ON m.repository_id = c.repository_id AND m.digest = c.digest
        FOR UPDATE OF m SKIP LOCKED
        """,
        [r.repository_id for r in reviews],
        [r.key for r in reviews],
    )
    locked = {(r["repository_id"], r["digest"]) for r in rows}
    return [r for r in reviews if (r.repository_id, r.key) in locked]


async def missing_manifests(conn: Conn, reviews: list[Review]) -> list[Review]:
    rows = await conn.fetch(
        """
        SELECT c.repository_id, c.digest FROM unnest($1::bigint[], $2::text[])
            AS c (repository_id, digest)
        WHERE NOT EXISTS (
            SELECT 1 FROM v2_manifests m
            WHERE m.repository_id = c.repository_id AND m.digest = c.digest
        )
        """,
        [r.repository_id for r in reviews],
        [r.key for r in reviews],
    )
    missing = {(r["repository_id"], r["digest"]) for r in rows}
    return [r for r in reviews if (r.repository_id, r.key) in missing]


async def delete_dead_manifests(
    conn: Conn, reviews: list[Review], grace: float, untagged_seconds: float | None
) -> list[DeletedManifest]:
    """Delete the (locked) manifests that are not live; the liveness rule of manifests.

    Live: tagged, or referenced by an index of the repository, or a referrer whose
    subject exists (or that is younger than ``grace``, as its subject may come later).
    Any other manifest is untagged: deleted when it was pushed at least
    ``untagged_seconds`` ago (None: untagged manifests are kept).
    """
    rows = await conn.fetch(
        """
        DELETE FROM v2_manifests m
        USING unnest($1::bigint[], $2::text[]) AS c (repository_id, digest)
        WHERE m.repository_id = c.repository_id AND m.digest = c.digest
          AND NOT EXISTS (
              SELECT 1 FROM v2_tags t
              WHERE t.repository_id = m.repository_id AND t.manifest_digest = m.digest
          )
          AND NOT EXISTS (
              SELECT 1 FROM v2_manifest_references r
              WHERE r.repository_id = m.repository_id AND r.digest = m.digest
                AND r.manifest_digest <> m.digest
          )
          AND CASE WHEN m.subject_digest IS NOT NULL THEN
                  m.created_at <= now() - make_interval(secs => $3::float8)
                  AND NOT EXISTS (
                      SELECT 1 FROM v2_manifests s
                      WHERE s.repository_id = m.repository_id AND s.digest = m.subject_digest
                  )
              ELSE $4::float8 IS NOT NULL
                  AND m.created_at <= now() - make_interval(secs => $4::float8)
          END
        RETURNING m.repository_id, m.digest,
            (SELECT r.namespace || '/' || r.name FROM repositories r
             WHERE r.repository_id = m.repository_id) AS repository
        """,
        [r.repository_id for r in reviews],
        [r.key for r in reviews],
        grace,
        untagged_seconds,
    )
    return [DeletedManifest(r["repository"] or "?", r["digest"]) for r in rows]


async def finish_manifest_reviews(
    conn: Conn, reviews: list[Review], grace: float, untagged_seconds: float
) -> None:
    """Close reviews; a manifest that may still expire is looked at again when it can.

    With ``untagged_seconds`` 0 untagged manifests are parked (review_after
    'infinity') until a run with it set unparks them.
    """
    await conn.execute(
        """
        WITH seen AS (
            SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])
                AS s (repository_id, digest, seq)
        ),
        again AS (
            SELECT m.repository_id, m.digest,
                CASE WHEN m.subject_digest IS NOT NULL
                         THEN m.created_at + make_interval(secs => $4::float8)
                     WHEN $5::float8 = 0 THEN 'infinity'::timestamptz
                     ELSE m.created_at + make_interval(secs => $5::float8)
                END AS until
            FROM v2_manifests m JOIN seen USING (repository_id, digest)
            WHERE NOT EXISTS (
                SELECT 1 FROM v2_tags t
                WHERE t.repository_id = m.repository_id AND t.manifest_digest = m.digest
            )
        ),
        later AS (
            UPDATE gc_manifest_reviews q SET review_after = a.until
            FROM again a, seen s
            WHERE a.until > now()
              AND (q.repository_id, q.digest) = (a.repository_id, a.digest)
              AND (s.repository_id, s.digest) = (q.repository_id, q.digest) AND q.seq = s.seq
        )
        DELETE FROM gc_manifest_reviews q USING seen s
        WHERE (q.repository_id, q.digest) = (s.repository_id, s.digest) AND q.seq = s.seq
          AND NOT EXISTS (
              SELECT 1 FROM again a
              WHERE (a.repository_id, a.digest) = (q.repository_id, q.digest) AND a.until > now()
          )
        """,
        [r.repository_id for r in reviews],
        [r.key for r in reviews],
        [r.seq for r in reviews],
        grace,
        untagged_seconds,
    )


async def postpone_manifest_reviews(conn: Conn, reviews: list[Review]) -> None:
    await conn.execute(
        f"""
        UPDATE gc_manifest_reviews q SET review_after = now() + {_BUSY_RETRY}
        FROM unnest($1::bigint[], $2::text[]) AS c (repository_id, digest)
        WHERE (q.repository_id, q.digest) = (c.repository_id, c.digest)
        """,
        [r.repository_id for r in reviews],
        [r.key for r in reviews],
    )


# v1 images --------------------------------------------------------------------------


async def lock_v1_images(conn: Conn, image_ids: list[str]) -> list[str]:
    rows = await conn.fetch(
        "SELECT image_id FROM v1_images WHERE image_id = ANY($1::text[]) FOR UPDATE SKIP LOCKED",
        image_ids,
    )
    return [r["image_id"] for r in rows]


async def missing_v1_images(conn: Conn, image_ids: list[str]) -> list[str]:
    rows = await conn.fetch(
        """
        SELECT i FROM unnest($1::text[]) AS i
        WHERE NOT EXISTS (SELECT 1 FROM v1_images v WHERE v.image_id = i)
        """,
        image_ids,
    )
    return [r["i"] for r in rows]


async def delete_dead_v1_images(
    conn: Conn, image_ids: list[str], grace: float, stale_upload: float
) -> list[str]:
    """Delete the (locked) v1 images that are not live; the liveness rule of v1 images.

    Live: the parent of an image (so a live image's whole ancestry stays: leaves
    go first); complete and tagged, declared in a repository's image list or younger
    than ``grace``; uploading and written to within ``stale_upload`` (and ``grace``).
    """
    rows = await conn.fetch(
        """
        DELETE FROM v1_images i
        WHERE i.image_id = ANY($1::text[])
          AND NOT EXISTS (SELECT 1 FROM v1_images c WHERE c.parent_id = i.image_id)
          AND CASE WHEN i.state = 'uploading' THEN
                  i.updated_at <= now() - make_interval(secs => greatest($2::float8, $3::float8))
              ELSE
                  i.updated_at <= now() - make_interval(secs => $2::float8)
                  AND NOT EXISTS (SELECT 1 FROM v1_tags t WHERE t.image_id = i.image_id)
                  AND NOT EXISTS (
                      SELECT 1 FROM repository_images d WHERE d.image_id = i.image_id
                  )
          END
        RETURNING i.image_id
        """,
        image_ids,
        grace,
        stale_upload,
    )
    return [r["image_id"] for r in rows]


async def finish_v1_image_reviews(
    conn: Conn, reviews: list[Review], grace: float, stale_upload: float
) -> None:
    await conn.execute(
        """
        WITH seen AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS s (image_id, seq)),
        young AS (
            SELECT i.image_id, i.updated_at + make_interval(secs => CASE
                WHEN i.state = 'uploading' THEN greatest($3::float8, $4::float8)
                ELSE $3::float8 END) AS until
            FROM v1_images i JOIN seen USING (image_id)
        ),
        later AS (
            UPDATE gc_v1_image_reviews q SET review_after = y.until
            FROM young y, seen s
            WHERE y.until > now() AND q.image_id = y.image_id
              AND s.image_id = q.image_id AND q.seq = s.seq
        )
        DELETE FROM gc_v1_image_reviews q USING seen s
        WHERE q.image_id = s.image_id AND q.seq = s.seq
          AND NOT EXISTS (SELECT 1 FROM young y WHERE y.image_id = q.image_id AND y.until > now())
        """,
        [r.key for r in reviews],
        [r.seq for r in reviews],
        grace,
        stale_upload,
    )


async def postpone_v1_image_reviews(conn: Conn, image_ids: list[str]) -> None:
    await conn.execute(
        f"UPDATE gc_v1_image_reviews SET review_after = now() + {_BUSY_RETRY} "
        "WHERE image_id = ANY($1::text[])",
        image_ids,
    )


# Upload sessions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExpiredUpload:
    upload_id: str
    size_bytes: int
    file_token: str | None  # the session file's generation


async def delete_expired_uploads(conn: Conn, max_age_seconds: float) -> list[ExpiredUpload]:
    """Forget sessions untouched for ``max_age_seconds`` and not being written by a live
    process (whose claim its advisory lock proves, see db/process_owner.py)."""
    rows = await conn.fetch(
        f"""
        DELETE FROM v2_uploads
        WHERE updated_at < now() - make_interval(secs => $1::float8)
          AND (busy_since IS NULL OR claim_owner IS NULL
               OR NOT {owner_alive_sql("claim_owner")})
        RETURNING upload_id, size_bytes, file_token
        """,
        max_age_seconds,
    )
    return [ExpiredUpload(r["upload_id"], r["size_bytes"], r["file_token"]) for r in rows]


# Retention ------------------------------------------------------------------------------


V1 = "v1"
V2 = "v2"


@dataclass(frozen=True, slots=True)
class TagRow:
    """A v2 tag (``target`` a manifest digest) or a v1 tag (``target`` an image id)."""

    repository_id: int
    repository: str
    tag: str
    target: str
    protocol: str  # V1 or V2


async def fetch_repository_names(conn: Conn) -> list[tuple[int, str]]:
    rows = await conn.fetch(
        "SELECT repository_id, namespace || '/' || name AS name FROM repositories ORDER BY 2"
    )
    return [(r["repository_id"], r["name"]) for r in rows]


async def fetch_tags_newest_first(conn: Conn, repository_id: int) -> list[TagRow]:
    """The repository's v2 and v1 tags together, most recently pushed first."""
    rows = await conn.fetch(
        """
        SELECT t.repository_id, r.namespace || '/' || r.name AS repository, t.tag, t.target,
               t.protocol
        FROM (
            SELECT repository_id, tag COLLATE "C" AS tag, manifest_digest AS target,
                   'v2' AS protocol, updated_at
            FROM v2_tags WHERE repository_id = $1
            UNION ALL
            SELECT repository_id, tag COLLATE "C", image_id, 'v1', updated_at
            FROM v1_tags WHERE repository_id = $1
        ) t JOIN repositories r USING (repository_id)
        ORDER BY t.updated_at DESC, t.tag, t.protocol
        """,
        repository_id,
    )
    return [
        TagRow(r["repository_id"], r["repository"], r["tag"], r["target"], r["protocol"])
        for r in rows
    ]


async def delete_v2_tag_if_unchanged(conn: Conn, tag: TagRow) -> bool:
    """Delete the tag unless it was moved meanwhile (then it is a new push: kept)."""
    status = await conn.execute(
        "DELETE FROM v2_tags WHERE repository_id = $1 AND tag = $2 AND manifest_digest = $3",
        tag.repository_id,
        tag.tag,
        tag.target,
    )
    return bool(status == "DELETE 1")


async def delete_v1_tag_if_unchanged(conn: Conn, tag: TagRow) -> bool:
    """Delete the v1 tag unless it was moved meanwhile (then it is a new push: kept)."""
    status = await conn.execute(
        "DELETE FROM v1_tags WHERE repository_id = $1 AND tag = $2 AND image_id = $3",
        tag.repository_id,
        tag.tag,
        tag.target,
    )
    return bool(status == "DELETE 1")


async def release_v1_declarations(
    conn: Conn, repository_id: int, untagged_image_ids: list[str]
) -> list[str]:
    """Withdraw the repository's declarations of the images in the ancestry of
    ``untagged_image_ids`` (whose tags retention just deleted) that no remaining v1
    tag of the repository reaches; return their ids.

    A declaration keeps an image live; without this, deleting a v1 tag would free
    nothing. Only ancestries of deleted tags are withdrawn: images declared by a push
    still in progress (not tagged yet) keep their declaration.
    """
    rows = await conn.fetch(
        """
        WITH released AS (
            SELECT DISTINCT a.image_id
            FROM v1_images i, unnest(i.ancestry) AS a (image_id)
            WHERE i.image_id = ANY($2::text[])
        )
        DELETE FROM repository_images d USING released r
        WHERE d.repository_id = $1 AND d.image_id = r.image_id
          AND NOT EXISTS (
              SELECT 1 FROM v1_tags t JOIN v1_images i USING (image_id)
              WHERE t.repository_id = $1 AND d.image_id = ANY(i.ancestry)
          )
        RETURNING d.image_id
        """,
        repository_id,
        untagged_image_ids,
    )
    return [r["image_id"] for r in rows]


# Collector lock ------------------------------------------------------------------------------

# One collector at a time across workers and replicas ("registry" + 1, see migrate.py).
COLLECTOR_LOCK_KEY = 0x7265_6769_7374_7280


async def try_collector_lock(conn: Conn) -> bool:
    locked: bool = await conn.fetchval("SELECT pg_try_advisory_lock($1)", COLLECTOR_LOCK_KEY)
    return locked


async def collector_lock(conn: Conn) -> None:
    await conn.execute("SELECT pg_advisory_lock($1)", COLLECTOR_LOCK_KEY)


async def collector_unlock(conn: Conn) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", COLLECTOR_LOCK_KEY)


# Scrub ---------------------------------------------------------------------------------------


async def fetch_blob_sizes(conn: Conn) -> dict[str, int]:
    """Every blob row (scrub compares the whole store, so it reads the whole table)."""
    rows = await conn.fetch("SELECT digest, size_bytes FROM blobs")
    return {r["digest"]: r["size_bytes"] for r in rows}


async def delete_blob_rows_and_references(conn: Conn, digest: Digest) -> None:
    """Forget a corrupt or lost blob everywhere, so that clients push it again.

    Images and manifests that refer to it stay (their pushes will be refused
    until the blob comes back); repository links and v1 layer pointers go.
    """
    await conn.execute(
        """
        UPDATE v1_images SET layer_digest = NULL, layer_size_bytes = NULL,
            checksum_payload = NULL, state = 'uploading', updated_at = now()
        WHERE layer_digest = $1
        """,
        str(digest),
    )
    await conn.execute("DELETE FROM v2_repository_blobs WHERE digest = $1", str(digest))
    await conn.execute("DELETE FROM blobs WHERE digest = $1", str(digest))


async def fetch_pending_removals(conn: Conn) -> list[str]:
    rows = await conn.fetch("SELECT digest FROM blob_deletions")
    return [r["digest"] for r in rows]


async def claim_blob_row(conn: Conn, digest: Digest) -> bool:
    """Insert a placeholder row for a digest that has none; False if a row exists (waits
    for a concurrent insert of the same digest to commit or roll back)."""
    claimed = await conn.fetchval(
        """
        INSERT INTO blobs (digest, size_bytes) VALUES ($1, 0)
        ON CONFLICT (digest) DO NOTHING RETURNING 1
        """,
        str(digest),
    )
    return claimed is not None


async def delete_blob_row(conn: Conn, digest: Digest) -> None:
    await conn.execute("DELETE FROM blobs WHERE digest = $1", str(digest))


async def lock_blob_row_exclusively(conn: Conn, digest: Digest) -> bool:
    """Lock the row against writers until the transaction ends; False if there is none."""
    found = await conn.fetchval("SELECT 1 FROM blobs WHERE digest = $1 FOR UPDATE", str(digest))
    return found is not None


# Run records --------------------------------------------------------------------------

# Runs kept for the admin pages; older records are dropped as new ones come.
KEPT_RUNS = 500


@dataclass(frozen=True, slots=True)
class RunRow:
    finished_at: datetime
    trigger: str
    dry_run: bool
    finished: bool
    counts: dict[str, Any]


async def insert_run(
    conn: Conn, trigger: str, dry_run: bool, finished: bool, counts: dict[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO gc_runs (trigger, dry_run, finished, counts) VALUES ($1, $2, $3, $4::jsonb)",
        trigger,
        dry_run,
        finished,
        json.dumps(counts),
    )
    await conn.execute(
        "DELETE FROM gc_runs WHERE run_id <= (SELECT max(run_id) FROM gc_runs) - $1", KEPT_RUNS
    )


async def fetch_runs(conn: Conn, limit: int) -> list[RunRow]:
    rows = await conn.fetch(
        "SELECT finished_at, trigger, dry_run, finished, counts FROM gc_runs"
        " ORDER BY run_id DESC LIMIT $1",
        limit,
    )
    return [
        RunRow(r["finished_at"], r["trigger"], r["dry_run"], r["finished"], json.loads(r["counts"]))
        for r in rows
    ]
