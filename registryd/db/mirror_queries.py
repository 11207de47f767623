"""The pull-through cache's SQL: one function per statement, like ``queries``.

Cached manifests, tags and blobs go to the ordinary tables (``queries``). A
mirrored tag's ``updated_at`` is when the upstream last confirmed it (no one
pushes to a mirrored namespace, so nothing else moves it): its age decides
whether it is served as is or revalidated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from registryd.db.conn import Conn
from registryd.db.manifest_queries import ManifestRow
from registryd.digest import Digest


async def fetch_tagged_manifest_age(
    conn: Conn, repository_id: int, tag: str
) -> tuple[ManifestRow, float] | None:
    """The tag's manifest and how many seconds ago the tag was last confirmed."""
    row = await conn.fetchrow(
        """
        SELECT m.digest, m.media_type, m.body,
               EXTRACT(EPOCH FROM now() - t.updated_at)::float8 AS age_seconds
        FROM v2_tags t
        JOIN v2_manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
        WHERE t.repository_id = $1 AND t.tag = $2
        """,
        repository_id,
        tag,
    )
    if row is None:
        return None
    manifest = ManifestRow(Digest.parse(row["digest"]), row["media_type"], row["body"])
    return manifest, float(row["age_seconds"])


async def touch_tag(conn: Conn, repository_id: int, tag: str) -> None:
    """Record that the upstream confirmed the tag now."""
    await conn.execute(
        "UPDATE v2_tags SET updated_at = now() WHERE repository_id = $1 AND tag = $2",
        repository_id,
        tag,
    )


async def take_download_lock(conn: Conn, key: int) -> None:
    """Take the session-level advisory lock of one blob download, waiting for it.

    Held until the connection closes: a crashed holder releases it with its session.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", key)


# Last pulls and eviction ------------------------------------------------------------------

# When a link or manifest of a mirrored repository was last used: its last recorded pull,
# or when it was stored (a relink or a re-fetch counts as new).
_LINK_USED = "GREATEST(l.created_at, p.last_pulled_at)"
_MANIFEST_USED = "GREATEST(m.created_at, p.last_pulled_at)"


@dataclass(frozen=True, slots=True)
class CachedBlob:
    digest: Digest
    size_bytes: int
    # When it was last pulled: itself, or a manifest that refers to it.
    used_at: datetime


@dataclass(frozen=True, slots=True)
class CachedManifest:
    repository_id: int
    digest: Digest
    used_at: datetime


async def record_pulls(conn: Conn, pulls: list[tuple[str, str, str, float]]) -> None:
    """Upsert last-pull times: ``(namespace, name, digest, unix time)``, sorted by key so
    that concurrent flushes lock rows in the same order. Repositories not (yet) stored
    are skipped."""
    await conn.execute(
        """
        INSERT INTO mirror_pulls (repository_id, digest, last_pulled_at)
        SELECT r.repository_id, p.digest, to_timestamp(p.at)
        FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[])
            AS p (namespace, name, digest, at)
        JOIN repositories r ON r.namespace = p.namespace AND r.name = p.name
        ORDER BY r.repository_id, p.digest
        ON CONFLICT (repository_id, digest) DO UPDATE
        SET last_pulled_at = GREATEST(mirror_pulls.last_pulled_at, EXCLUDED.last_pulled_at)
        """,
        [p[0] for p in pulls],
        [p[1] for p in pulls],
        [p[2] for p in pulls],
        [p[3] for p in pulls],
    )


async def cache_bytes(conn: Conn, namespace: str) -> int:
    """Bytes of the distinct blobs the namespace's repositories hold."""
    total: int = await conn.fetchval(
        """
        SELECT COALESCE(sum(b.size_bytes), 0)::bigint FROM blobs b
        WHERE b.digest IN (
            SELECT l.digest FROM v2_repository_blobs l
            JOIN repositories r ON r.repository_id = l.repository_id
            WHERE r.namespace = $1
        )
        """,
        namespace,
    )
    return total


_BLOB_USE = f"""
    links AS (
        SELECT l.repository_id, l.digest, {_LINK_USED} AS used
        FROM v2_repository_blobs l
        JOIN repositories r ON r.repository_id = l.repository_id
        LEFT JOIN mirror_pulls p ON p.repository_id = l.repository_id AND p.digest = l.digest
        WHERE r.namespace = $1 {{only}}
    ),
    referrers AS (
        SELECT k.digest, max({_MANIFEST_USED}) AS used
        FROM links k
        JOIN v2_manifest_references mr
            ON mr.repository_id = k.repository_id AND mr.digest = k.digest
        JOIN v2_manifests m
            ON m.repository_id = mr.repository_id AND m.digest = mr.manifest_digest
        LEFT JOIN mirror_pulls p ON p.repository_id = m.repository_id AND p.digest = m.digest
        GROUP BY k.digest
    ),
    used AS (
        SELECT k.digest, GREATEST(max(k.used), max(f.used)) AS used_at
        FROM links k LEFT JOIN referrers f ON f.digest = k.digest
        GROUP BY k.digest
    )
"""


async def least_recently_pulled_blobs(
    conn: Conn, namespace: str, used_before: datetime, limit: int
) -> list[CachedBlob]:
    """The namespace's blobs last used before ``used_before``, least recently used first."""
    rows = await conn.fetch(
        f"""
        WITH {_BLOB_USE.format(only="")}
        SELECT u.digest, b.size_bytes, u.used_at FROM used u JOIN blobs b ON b.digest = u.digest
        WHERE u.used_at < $2
        ORDER BY u.used_at, u.digest
        LIMIT $3
        """,
        namespace,
        used_before,
        limit,
    )
    return [CachedBlob(Digest.parse(r["digest"]), r["size_bytes"], r["used_at"]) for r in rows]


async def blob_used_at(conn: Conn, namespace: str, digest: Digest) -> datetime | None:
    """When the namespace's repositories last used the blob (None: they do not hold it)."""
    used: datetime | None = await conn.fetchval(
        f"WITH {_BLOB_USE.format(only='AND l.digest = $2')} SELECT max(used_at) FROM used",
        namespace,
        str(digest),
    )
    return used


async def manifests_unused_since(
    conn: Conn, namespace: str, used_before: datetime, limit: int
) -> list[CachedManifest]:
    """The namespace's manifests that neither they nor an index referring to them were
    pulled since ``used_before``."""
    rows = await conn.fetch(
        f"""
        SELECT m.repository_id, m.digest, {_MANIFEST_USED} AS used_at
        FROM v2_manifests m
        JOIN repositories r ON r.repository_id = m.repository_id
        LEFT JOIN mirror_pulls p ON p.repository_id = m.repository_id AND p.digest = m.digest
        WHERE r.namespace = $1 AND {_MANIFEST_USED} < $2
          AND NOT EXISTS (
              SELECT 1 FROM v2_manifest_references mr
              JOIN v2_manifests i
                  ON i.repository_id = mr.repository_id AND i.digest = mr.manifest_digest
              LEFT JOIN mirror_pulls ip
                  ON ip.repository_id = i.repository_id AND ip.digest = i.digest
              WHERE mr.repository_id = m.repository_id AND mr.digest = m.digest
                AND GREATEST(i.created_at, ip.last_pulled_at) >= $2
          )
        ORDER BY used_at
        LIMIT $3
        """,
        namespace,
        used_before,
        limit,
    )
    return [
        CachedManifest(r["repository_id"], Digest.parse(r["digest"]), r["used_at"]) for r in rows
    ]


async def manifest_used_at(conn: Conn, repository_id: int, digest: Digest) -> datetime | None:
    used: datetime | None = await conn.fetchval(
        f"""
        SELECT {_MANIFEST_USED} FROM v2_manifests m
        LEFT JOIN mirror_pulls p ON p.repository_id = m.repository_id AND p.digest = m.digest
        WHERE m.repository_id = $1 AND m.digest = $2
        """,
        repository_id,
        str(digest),
    )
    return used


async def lock_evicted_manifests(
    conn: Conn, namespace: str, digest: Digest, repository_id: int | None
) -> tuple[list[tuple[int, str]], bool]:
    """Lock the namespace's manifests that are ``digest`` (in ``repository_id``, if given)
    or refer to it, directly or through an index, ``FOR UPDATE SKIP LOCKED``.

    Returns them and whether every one was locked (False: a writer holds one).
    """
    rows = await conn.fetch(
        """
        WITH RECURSIVE doomed (repository_id, digest) AS (
            SELECT m.repository_id, m.digest FROM v2_manifests m
            JOIN repositories r ON r.repository_id = m.repository_id
            WHERE r.namespace = $1 AND m.digest = $2
              AND ($3::bigint IS NULL OR m.repository_id = $3)
            UNION
            SELECT mr.repository_id, mr.manifest_digest FROM v2_manifest_references mr
            JOIN repositories r ON r.repository_id = mr.repository_id
            WHERE r.namespace = $1 AND mr.digest = $2
              AND ($3::bigint IS NULL OR mr.repository_id = $3)
            UNION
            SELECT mr.repository_id, mr.manifest_digest FROM v2_manifest_references mr
            JOIN doomed d ON mr.repository_id = d.repository_id AND mr.digest = d.digest
        ),
        locked AS (
            SELECT m.repository_id, m.digest FROM v2_manifests m
            JOIN doomed d ON m.repository_id = d.repository_id AND m.digest = d.digest
            FOR UPDATE OF m SKIP LOCKED
        )
        SELECT repository_id, digest, true AS locked FROM locked
        UNION ALL
        SELECT repository_id, digest, false FROM doomed
        """,
        namespace,
        str(digest),
        repository_id,
    )
    locked = [(r["repository_id"], r["digest"]) for r in rows if r["locked"]]
    found = {(r["repository_id"], r["digest"]) for r in rows if not r["locked"]}
    return locked, set(locked) == found


async def lock_evicted_links(conn: Conn, namespace: str, digest: Digest) -> tuple[list[int], bool]:
    """Lock the namespace's links to the blob ``FOR UPDATE SKIP LOCKED``: the repositories,
    and whether every link was locked."""
    rows = await conn.fetch(
        """
        WITH links AS (
            SELECT l.repository_id FROM v2_repository_blobs l
            JOIN repositories r ON r.repository_id = l.repository_id
            WHERE r.namespace = $1 AND l.digest = $2
        ),
        locked AS (
            SELECT l.repository_id FROM v2_repository_blobs l
            WHERE l.digest = $2 AND l.repository_id IN (SELECT repository_id FROM links)
            FOR UPDATE SKIP LOCKED
        )
        SELECT (SELECT array_agg(repository_id) FROM locked) AS locked,
               (SELECT count(*) FROM links) AS total
        """,
        namespace,
        str(digest),
    )
    row = rows[0]
    locked = list(row["locked"] or [])
    return locked, len(locked) == row["total"]


async def delete_manifests(conn: Conn, manifests: list[tuple[int, str]]) -> int:
    """Delete manifests (their tags and references go with them)."""
    status = await conn.execute(
        """
        DELETE FROM v2_manifests m
        USING unnest($1::bigint[], $2::text[]) AS d (repository_id, digest)
        WHERE m.repository_id = d.repository_id AND m.digest = d.digest
        """,
        [m[0] for m in manifests],
        [m[1] for m in manifests],
    )
    return int(status.split()[-1])


async def delete_links(conn: Conn, repository_ids: list[int], digest: Digest) -> int:
    status = await conn.execute(
        "DELETE FROM v2_repository_blobs WHERE repository_id = ANY($1::bigint[]) AND digest = $2",
        repository_ids,
        str(digest),
    )
    return int(status.split()[-1])


async def forget_pulls(conn: Conn, keys: list[tuple[int, str]]) -> None:
    await conn.execute(
        """
        DELETE FROM mirror_pulls p
        USING unnest($1::bigint[], $2::text[]) AS k (repository_id, digest)
        WHERE p.repository_id = k.repository_id AND p.digest = k.digest
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
    )


async def forget_orphan_pulls(conn: Conn) -> int:
    """Drop last-pull rows whose link and manifest are gone (collected or deleted)."""
    status = await conn.execute(
        """
        DELETE FROM mirror_pulls p
        WHERE NOT EXISTS (
            SELECT 1 FROM v2_repository_blobs l
            WHERE l.repository_id = p.repository_id AND l.digest = p.digest
        )
        AND NOT EXISTS (
            SELECT 1 FROM v2_manifests m
            WHERE m.repository_id = p.repository_id AND m.digest = p.digest
        )
        """
    )
    return int(status.split()[-1])


async def lock_pending_deletion(conn: Conn, digest: Digest) -> bool:
    """Lock the blob's pending file removal (the collector's protocol, see
    ``gc_queries.lock_pending_deletions``); False when there is none to do now."""
    found = await conn.fetchval(
        """
        SELECT 1 FROM blob_deletions d
        WHERE d.digest = $1 AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = d.digest)
        FOR UPDATE OF d SKIP LOCKED
        """,
        str(digest),
    )
    return found is not None


async def try_eviction_lock(conn: Conn) -> bool:
    """One process evicts at a time (session-level advisory lock)."""
    taken: bool = await conn.fetchval("SELECT pg_try_advisory_lock($1)", _EVICTION_LOCK_KEY)
    return taken


async def eviction_unlock(conn: Conn) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", _EVICTION_LOCK_KEY)


# The advisory lock key of eviction rounds ("mirrevic").
_EVICTION_LOCK_KEY = 0x6D69727265766963


# Downloads in flight --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DownloadRow:
    temp_path: str
    size_bytes: int


async def insert_download(conn: Conn, digest: Digest, temp_path: str, size_bytes: int) -> None:
    """Announce a download on the connection holding its lock (replaces a stale row)."""
    await conn.execute(
        """
        INSERT INTO mirror_downloads (digest, temp_path, size_bytes, holder_pid)
        VALUES ($1, $2, $3, pg_backend_pid())
        ON CONFLICT (digest) DO UPDATE
        SET temp_path = EXCLUDED.temp_path, size_bytes = EXCLUDED.size_bytes,
            holder_pid = EXCLUDED.holder_pid, started_at = now()
        """,
        str(digest),
        temp_path,
        size_bytes,
    )


async def fetch_download(conn: Conn, digest: Digest) -> DownloadRow | None:
    """The download in progress, if its holder still holds an advisory lock (a crashed
    holder's row is ignored)."""
    row = await conn.fetchrow(
        """
        SELECT d.temp_path, d.size_bytes FROM mirror_downloads d
        WHERE d.digest = $1 AND EXISTS (
            SELECT 1 FROM pg_locks l
            WHERE l.pid = d.holder_pid AND l.locktype = 'advisory' AND l.granted
        )
        """,
        str(digest),
    )
    return None if row is None else DownloadRow(row["temp_path"], row["size_bytes"])


async def delete_download(conn: Conn, digest: Digest) -> None:
    """Delete a stale announcement (the caller holds the digest's lock)."""
    await conn.execute("DELETE FROM mirror_downloads WHERE digest = $1", str(digest))


async def withdraw_download(conn: Conn, digest: Digest) -> None:
    """Delete the announcement this connection made, if it made one."""
    await conn.execute(
        "DELETE FROM mirror_downloads WHERE digest = $1 AND holder_pid = pg_backend_pid()",
        str(digest),
    )


async def try_download_lock(conn: Conn, key: int) -> bool:
    """Take the download lock of one blob if it is free (see ``take_download_lock``)."""
    taken: bool = await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)
    return taken
