"""SQL of v2 upload sessions: claims held by live processes, file generations, caps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from registryd.db.conn import Conn
from registryd.db.process_owner import NAMESPACE, owner_alive_sql

# Second advisory-lock namespace: one lock per user while counting their sessions.
_USER_LOCK_NAMESPACE = NAMESPACE + 1


@dataclass(frozen=True, slots=True)
class ClaimedSession:
    upload_id: str
    repository_id: int
    size_bytes: int
    # The claim's token: release and file updates only count while it is still ours.
    claimed_at: datetime
    file_token: str | None
    declared_size: int | None
    # Another request's claim was taken over (its process is dead, or was reported dead):
    # it may still write to the current file, so this claim must move to a new one.
    taken_over: bool


async def insert_session(
    conn: Conn, upload_id: str, repository_id: int, created_by: str | None
) -> None:
    await conn.execute(
        "INSERT INTO v2_uploads (upload_id, repository_id, created_by) VALUES ($1, $2, $3)",
        upload_id,
        repository_id,
        created_by,
    )


async def count_user_sessions_locked(conn: Conn, created_by: str) -> int:
    """Open sessions of ``created_by``; holds a per-user lock until the transaction ends,
    so that concurrent starts of one user count one after the other."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))", _USER_LOCK_NAMESPACE, created_by
    )
    count: int = await conn.fetchval(
        "SELECT count(*) FROM v2_uploads WHERE created_by = $1", created_by
    )
    return count


async def claim_session(
    conn: Conn, upload_id: str, repository_id: int, owner: int
) -> ClaimedSession | None:
    """Claim the session for a request of process ``owner``; None if unknown or busy.

    A claim is busy while its process holds its advisory lock; a claim of a dead
    process is taken over at once. The caller has checked that no request of its
    own process holds the session, so a mark of ``owner`` is a leftover.
    """
    row = await conn.fetchrow(
        f"""
        WITH current AS (
            SELECT upload_id, busy_since AS previous FROM v2_uploads
            WHERE upload_id = $1 AND repository_id = $2
            FOR UPDATE
        )
        UPDATE v2_uploads u
        SET busy_since = clock_timestamp(), claim_owner = $3, updated_at = now()
        FROM current
        WHERE u.upload_id = current.upload_id
          AND (u.busy_since IS NULL
               OR u.claim_owner IS NULL
               OR u.claim_owner = $3
               OR NOT {owner_alive_sql("u.claim_owner")})
        RETURNING u.upload_id, u.repository_id, u.size_bytes, u.busy_since, u.file_token,
                  u.declared_size, current.previous IS NOT NULL AS taken_over
        """,
        upload_id,
        repository_id,
        owner,
    )
    if row is None:
        return None
    return ClaimedSession(
        upload_id=row["upload_id"],
        repository_id=row["repository_id"],
        size_bytes=row["size_bytes"],
        claimed_at=row["busy_since"],
        file_token=row["file_token"],
        declared_size=row["declared_size"],
        taken_over=row["taken_over"],
    )


async def release_leftover_claims(conn: Conn, owner: int, in_flight: list[str]) -> int:
    """Clear the claims of process ``owner`` on sessions other than ``in_flight``."""
    status = await conn.execute(
        """
        UPDATE v2_uploads SET busy_since = NULL, claim_owner = NULL
        WHERE claim_owner = $1 AND NOT (upload_id = ANY($2::text[]))
        """,
        owner,
        in_flight,
    )
    return int(status.split()[-1])


async def set_file_token(conn: Conn, upload_id: str, claimed_at: datetime, token: str) -> bool:
    """Point the session at a new file generation; False if the claim is no longer ours."""
    status = await conn.execute(
        "UPDATE v2_uploads SET file_token = $3 WHERE upload_id = $1 AND busy_since = $2",
        upload_id,
        claimed_at,
        token,
    )
    return bool(status == "UPDATE 1")


async def release_session(
    conn: Conn, upload_id: str, size_bytes: int, claimed_at: datetime, declared_size: int | None
) -> bool:
    """Record the new size (and a declared total), clear the claim made at ``claimed_at``.

    Returns False when the claim was taken over (or the session deleted) meanwhile.
    """
    status = await conn.execute(
        """
        UPDATE v2_uploads
        SET size_bytes = $2, busy_since = NULL, claim_owner = NULL, updated_at = now(),
            declared_size = COALESCE($4, declared_size)
        WHERE upload_id = $1 AND busy_since = $3
        """,
        upload_id,
        size_bytes,
        claimed_at,
        declared_size,
    )
    return bool(status == "UPDATE 1")


@dataclass(frozen=True, slots=True)
class SessionFile:
    file_token: str | None
    busy: bool
    # Claimed by a process that is alive (busy, and not a dead process's leftover).
    claimed_alive: bool = False


async def fetch_session_files(conn: Conn, upload_ids: list[str]) -> dict[str, SessionFile]:
    """Of ``upload_ids``, those that are sessions: their file generation, whether claimed
    (and by a live process)."""
    rows = await conn.fetch(
        f"""
        SELECT upload_id, file_token, busy_since IS NOT NULL AS busy,
               busy_since IS NOT NULL AND claim_owner IS NOT NULL
                   AND {owner_alive_sql("claim_owner")} AS claimed_alive
        FROM v2_uploads
        WHERE upload_id = ANY($1::text[])
        """,
        upload_ids,
    )
    return {
        r["upload_id"]: SessionFile(r["file_token"], r["busy"], r["claimed_alive"]) for r in rows
    }


async def fetch_live_owners(conn: Conn, owners: list[int]) -> set[int]:
    """Those of the process keys ``owners`` whose process is alive."""
    rows = await conn.fetch(
        f"SELECT o FROM unnest($1::integer[]) AS o WHERE {owner_alive_sql('o')}", owners
    )
    return {r["o"] for r in rows}


async def delete_expired_sessions(conn: Conn, max_age_seconds: int) -> list[tuple[str, str | None]]:
    """Forget sessions untouched for ``max_age_seconds`` and not being written by a live
    process; return their ids and file generations (to remove the files)."""
    rows = await conn.fetch(
        f"""
        DELETE FROM v2_uploads
        WHERE updated_at < now() - make_interval(secs => $1)
          AND (busy_since IS NULL OR claim_owner IS NULL
               OR NOT {owner_alive_sql("claim_owner")})
        RETURNING upload_id, file_token
        """,
        max_age_seconds,
    )
    return [(r["upload_id"], r["file_token"]) for r in rows]


async def fetch_session_file(conn: Conn, upload_id: str) -> tuple[bool, str | None]:
    """Whether the session exists, and its file generation."""
    row = await conn.fetchrow("SELECT file_token FROM v2_uploads WHERE upload_id = $1", upload_id)
    return (row is not None, row["file_token"] if row is not None else None)


@dataclass(frozen=True, slots=True)
class UploadRow:
    upload_id: str
    repository_id: int
    size_bytes: int
    # Set while a request writes to the session; doubles as that request's claim token.
    busy_since: datetime | None


def _upload(row: asyncpg.Record) -> UploadRow:
    return UploadRow(
        upload_id=row["upload_id"],
        repository_id=row["repository_id"],
        size_bytes=row["size_bytes"],
        busy_since=row["busy_since"],
    )


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
