"""v2 blob upload sessions (spec end-4 … end-6, end-13, cancel).

A session is a row in ``v2_uploads`` plus its bytes in the storage, so it
survives a restart and any replica sharing both can take the next chunk. While
a request writes, the row is claimed by it; chunks must arrive in order. The
commit verifies the digest over the stored bytes, moves them to their content
address and links the blob into the repository, all or nothing.

Claims and committed bytes:

- A claim names the process that made it (``registryd.db.process_owner``): it
  is busy exactly while that process lives, so after a crash the next request
  resumes at once, on any replica, and a busy session is a retryable 429.
- A claim whose process looks dead is taken over. That process may in fact
  still run (its database connection was cut) and write to the session's file.
  So a takeover never continues in that file: it copies the recorded bytes
  (which no one changes) into a new file generation, recorded in the row, and
  only the claim holding a generation ever commits it. The old holder keeps a
  descriptor of a file that no one will commit, and once a file is at its
  content address no descriptor that can write to it exists.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from registryd.db import gc_holds, repository_queries, upload_queries
from registryd.db.upload_queries import ClaimedSession
from registryd.digest import Digest, Hasher
from registryd.domain import commits
from registryd.domain.services import Services
from registryd.errors import (
    BodyTooLarge,
    ContentRangeInvalid,
    DigestMismatch,
    SizeInvalid,
    TooManyUploads,
    UploadBusy,
    UploadRangeInvalid,
    UploadUnknown,
)
from registryd.names import RepositoryName

log = logging.getLogger(__name__)

# The public upload id (the last segment of the session's Location): unguessable,
# and the storage's key for the session's bytes, which each backend validates again.
_UPLOAD_ID_RE = re.compile(r"[a-f0-9]{32}")


def new_upload_id() -> str:
    return secrets.token_hex(16)


def _known_form(upload_id: str) -> bool:
    return _UPLOAD_ID_RE.fullmatch(upload_id) is not None


def _new_generation() -> str:
    """A session's next generation of bytes (after a takeover): 16 hex, as storage keys want."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class ChunkRange:
    """A PATCH's ``Content-Range: <start>-<end>[/<total>]`` (inclusive, no ``bytes`` unit)."""

    start: int
    end: int
    total: int | None = None  # the whole blob's size, when the client says it

    @property
    def length(self) -> int:
        return self.end - self.start + 1


async def start_upload(svc: Services, name: RepositoryName, created_by: str | None) -> str:
    """Open a session in the repository (created if new); return the upload id.

    A signed-in user has at most ``max_uploads_per_user`` open sessions
    (TooManyUploads). The row comes first, the file second: a file never exists
    without its row, so the sweeper can remove any that has none.
    """
    upload_id = new_upload_id()
    limit = svc.settings.max_uploads_per_user
    async with svc.pool.acquire() as conn, conn.transaction():
        repo = await repository_queries.ensure_repository(conn, name)
        if (
            created_by is not None
            and limit
            and await upload_queries.count_user_sessions_locked(conn, created_by) >= limit
        ):
            raise TooManyUploads(limit)
        await upload_queries.insert_session(conn, upload_id, repo.repository_id, created_by)
    try:
        await svc.storage.create_upload(upload_id)
    except BaseException:
        async with svc.pool.acquire() as conn:
            await upload_queries.delete_upload(conn, upload_id)
        raise
    return upload_id


async def upload_size(svc: Services, name: RepositoryName, upload_id: str) -> int:
    """Bytes received so far (spec end-13); raise UploadUnknown."""
    if not _known_form(upload_id):
        raise UploadUnknown()
    async with svc.pool.acquire() as conn:
        repo = await repository_queries.fetch_repository(conn, name)
        upload = (
            await upload_queries.fetch_upload(conn, upload_id, repo.repository_id)
            if repo is not None
            else None
        )
    if upload is None:
        raise UploadUnknown()
    return upload.size_bytes


async def cancel_upload(svc: Services, name: RepositoryName, upload_id: str) -> None:
    """Forget the session and its bytes; raise UploadUnknown."""
    if not _known_form(upload_id):
        raise UploadUnknown()
    async with svc.pool.acquire() as conn:
        repo = await repository_queries.fetch_repository(conn, name)
        if (
            repo is None
            or await upload_queries.fetch_upload(conn, upload_id, repo.repository_id) is None
        ):
            raise UploadUnknown()
        _, generation = await upload_queries.fetch_session_file(conn, upload_id)
        await upload_queries.delete_upload(conn, upload_id)
    svc.upload_hashes.drop(upload_id)
    await svc.storage.delete_upload(upload_id, generation)


async def _claim(svc: Services, name: RepositoryName, upload_id: str) -> ClaimedSession:
    if not _known_form(upload_id):
        raise UploadUnknown()
    # Registered before the claim is made: a mark of this process on a session that
    # is not listed here is a leftover (release_leftover_claims), never a claim in the making.
    if upload_id in svc.upload_claims:
        raise UploadBusy()
    svc.upload_claims.add(upload_id)
    try:
        async with svc.pool.acquire() as conn:
            repo = await repository_queries.fetch_repository(conn, name)
            if repo is None:
                raise UploadUnknown()
            claim = await upload_queries.claim_session(
                conn, upload_id, repo.repository_id, svc.storage.owner
            )
            if claim is None:
                if await upload_queries.fetch_upload(conn, upload_id, repo.repository_id) is None:
                    raise UploadUnknown()
                raise UploadBusy()
    except BaseException:
        svc.upload_claims.discard(upload_id)
        raise
    return claim


async def _own_file(svc: Services, claim: ClaimedSession) -> ClaimedSession:
    """After a takeover, move the session to a file generation of this claim's own."""
    if not claim.taken_over:
        return claim
    generation = _new_generation()
    async with svc.pool.acquire() as conn:
        if not await upload_queries.set_file_token(
            conn, claim.upload_id, claim.claimed_at, generation
        ):
            raise UploadBusy()  # taken over in turn
    log.warning(
        "upload session taken over from a request whose process looks dead",
        extra={"fields": {"upload_id": claim.upload_id}},
    )
    try:
        await svc.storage.fork_upload(
            claim.upload_id, claim.file_token, generation, claim.size_bytes
        )
    except UploadUnknown:
        await _forget(svc, claim.upload_id, generation)
        raise
    return dataclasses.replace(claim, file_token=generation, taken_over=False)


async def _release(
    svc: Services, claim: ClaimedSession, size_bytes: int, declared_size: int | None
) -> bool:
    svc.upload_claims.discard(claim.upload_id)
    async with svc.pool.acquire() as conn:
        released = await upload_queries.release_session(
            conn, claim.upload_id, size_bytes, claim.claimed_at, declared_size
        )
        if released:
            return True
        exists, _ = await upload_queries.fetch_session_file(conn, claim.upload_id)
    svc.upload_hashes.drop(claim.upload_id)
    if not exists:
        # The session ended meanwhile (cancelled, expired, its repository deleted, or
        # committed by a request that took it over): no one needs our file any more.
        await svc.storage.delete_upload(claim.upload_id, claim.file_token)
    # Otherwise whoever took the claim over copies from our file and removes it.
    return False


async def _forget(svc: Services, upload_id: str, generation: str | None) -> None:
    async with svc.pool.acquire() as conn:
        await upload_queries.delete_upload(conn, upload_id)
    svc.upload_hashes.drop(upload_id)
    await svc.storage.delete_upload(upload_id, generation)


async def _append(
    svc: Services,
    claim: ClaimedSession,
    body: AsyncIterator[bytes | memoryview],
    chunk_range: ChunkRange | None,
) -> tuple[int, int | None]:
    """Append ``body`` at the session's end; return the new size and the declared total.

    Runs under a claim.
    """
    declared = claim.declared_size
    if chunk_range is not None:
        if chunk_range.start != claim.size_bytes:
            raise UploadRangeInvalid(claim.size_bytes)
        if chunk_range.total is not None:
            if declared is not None and chunk_range.total != declared:
                raise ContentRangeInvalid(
                    f"total {chunk_range.total} differs from the {declared} declared before"
                )
            declared = chunk_range.total
    limit = svc.settings.max_layer_bytes
    hasher = svc.upload_hashes.take(claim.upload_id, claim.size_bytes)
    try:
        appender = await svc.storage.append_upload(
            claim.upload_id, claim.file_token, claim.size_bytes, hasher
        )
    except UploadUnknown:
        # The row outlived its file (swept as stale): the session is gone.
        await _forget(svc, claim.upload_id, claim.file_token)
        raise
    async with appender:
        async for chunk in body:
            if limit and appender.size_bytes + len(chunk) > limit:
                raise BodyTooLarge(limit)
            if declared is not None and appender.size_bytes + len(chunk) > declared:
                raise SizeInvalid()  # past the total the client announced
            await appender.write(chunk)
        received = appender.size_bytes - claim.size_bytes
        if chunk_range is not None and received != chunk_range.length:
            raise SizeInvalid()
        size = await appender.finish()
    svc.upload_hashes.save(claim.upload_id, size, hasher)
    return size, declared


async def append_chunk(
    svc: Services,
    name: RepositoryName,
    upload_id: str,
    body: AsyncIterator[bytes | memoryview],
    chunk_range: ChunkRange | None,
) -> int:
    """PATCH (spec end-5): append a chunk, streamed or ranged; return the session's size.

    Raises UploadUnknown, UploadBusy, UploadRangeInvalid (out of order),
    ContentRangeInvalid, SizeInvalid, BodyTooLarge, StorageFull, and what
    ``body`` raises; a failed chunk leaves the session as it was.
    """
    claim = await _claim(svc, name, upload_id)
    size, declared = claim.size_bytes, None
    try:
        claim = await _own_file(svc, claim)
        size, declared = await _append(svc, claim, body, chunk_range)
    except BaseException:
        await _release(svc, claim, claim.size_bytes, None)
        raise
    if not await _release(svc, claim, size, declared):
        # Taken over while we wrote: our bytes went to a file no one will commit.
        raise UploadBusy()
    return size


async def complete_upload(
    svc: Services,
    name: RepositoryName,
    upload_id: str,
    digest: Digest,
    body: AsyncIterator[bytes | memoryview],
    chunk_range: ChunkRange | None = None,
) -> None:
    """PUT ?digest= (spec end-6): append the final chunk, verify and store the blob.

    On DigestMismatch the session is removed with its bytes (as distribution does);
    a final chunk out of order raises UploadRangeInvalid and keeps the session.
    """
    claim = await _claim(svc, name, upload_id)
    size = claim.size_bytes
    committed = False
    try:
        claim = await _own_file(svc, claim)
        appended, declared = await _append(svc, claim, body, chunk_range)
        if declared is not None and appended != declared:
            raise SizeInvalid()  # released at the old size: the final chunk leaves no trace
        size = appended
        hasher = svc.upload_hashes.take(upload_id, size)
        try:
            await commits.run_commit(svc, _commit_session(svc, claim, size, digest, hasher))
        except (DigestMismatch, UploadUnknown):
            committed = True  # nothing left to release
            svc.upload_claims.discard(upload_id)
            await _forget(svc, upload_id, claim.file_token)
            raise
        committed = True
        svc.upload_claims.discard(upload_id)
        svc.upload_hashes.drop(upload_id)
    finally:
        if not committed:
            await _release(svc, claim, size, None)


async def _commit_session(
    svc: Services, claim: ClaimedSession, size: int, digest: Digest, hasher: Hasher | None
) -> None:
    """Verify and place the session's bytes, link the blob and end the session: one unit."""
    async with svc.pool.acquire() as conn, conn.transaction():
        # The blob's row exists before its bytes are placed (a failure here leaves
        # no blob without a row) and is held until the link commits, so garbage
        # collection cannot remove either (db/gc_holds.py).
        await gc_holds.hold_blob(conn, digest, size)
        await svc.storage.commit_upload(claim.upload_id, claim.file_token, size, digest, hasher)
        await gc_holds.link_blob(conn, claim.repository_id, digest)
        await upload_queries.delete_upload(conn, claim.upload_id)


async def upload_whole_blob(
    svc: Services,
    name: RepositoryName,
    digest: Digest,
    body: AsyncIterator[bytes | memoryview],
    created_by: str | None,
) -> None:
    """Single-POST monolithic upload (spec end-4b): a session opened and completed at once.

    No one else knows the session: when it fails, it goes with its bytes.
    """
    upload_id = await start_upload(svc, name, created_by)
    try:
        await complete_upload(svc, name, upload_id, digest, body)
    except BaseException:
        async with svc.pool.acquire() as conn:
            exists, generation = await upload_queries.fetch_session_file(conn, upload_id)
        if exists:
            await _forget(svc, upload_id, generation)
        raise


async def expire_uploads(svc: Services) -> int:
    """Remove sessions untouched for ``stale_upload_seconds`` with their bytes; return how many."""
    async with svc.pool.acquire() as conn:
        expired = await upload_queries.delete_expired_sessions(
            conn, svc.settings.stale_upload_seconds
        )
    for upload_id, generation in expired:
        svc.upload_hashes.drop(upload_id)
        await svc.storage.delete_upload(upload_id, generation)
    return len(expired)


async def release_leftover_claims(svc: Services) -> int:
    """Clear claims of this process that no request of it holds (their release failed,
    e.g. in a database outage): other replicas could not take them over, as we live."""
    async with svc.pool.acquire() as conn:
        return await upload_queries.release_leftover_claims(
            conn, svc.storage.owner, sorted(svc.upload_claims)
        )


async def sweep_temp_files(svc: Services, max_age_seconds: float, grace_seconds: float = 0) -> int:
    """Remove temp files no one will use again; return how many.

    A session file whose session is gone (or that a takeover replaced), and a
    process's temp file once that process is dead, go once untouched for
    ``grace_seconds`` (at start-up: 0, whatever their age); a file of no known
    kind when untouched for ``max_age_seconds``. Files
    are listed before the rows are read, and a session's row exists before its
    file (and names a new generation before that file is made), so a session
    that starts meanwhile is never taken for an orphan.
    """
    files = await svc.storage.temp_files()
    if not files:
        return 0
    session_ids = sorted({f.upload_key for f in files if f.upload_key is not None})
    owners = sorted({f.owner for f in files if f.owner is not None})
    async with svc.pool.acquire() as conn:
        sessions = await upload_queries.fetch_session_files(conn, session_ids)
        live = await upload_queries.fetch_live_owners(conn, owners)
    now = time.time()
    cutoff = now - max_age_seconds
    doomed = []
    for file in files:
        if file.mtime > now - grace_seconds:
            continue
        if file.upload_key is not None:
            session = sessions.get(file.upload_key)
            # A claimed session may be mid-takeover: the new claim still copies the old file.
            # An unfinished write (an object store's multipart upload) is in flight only
            # under a claim of a live process: once that process is dead it is an orphan.
            if (
                session is None
                or (file.partial and not session.claimed_alive)
                or (not session.busy and session.file_token != file.generation)
            ):
                doomed.append(file.name)
        elif file.owner is not None:
            if file.owner not in live:
                doomed.append(file.name)
        elif file.mtime <= cutoff:
            doomed.append(file.name)
    return await svc.storage.remove_temp_files(doomed) if doomed else 0
