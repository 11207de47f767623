"""v2 blob upload sessions (spec end-4 … end-6, end-13, cancel).

A session is a row in ``v2_uploads`` plus a temp file in the storage, so it
survives a restart and any replica sharing both can take the next chunk. While
a request writes, the row is marked busy (a claim); chunks must arrive in order.
The commit verifies the digest over the stored bytes, moves them to their
content address and links the blob into the repository, all or nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from registryd.db import queries
from registryd.digest import Digest
from registryd.domain.services import Services
from registryd.errors import (
    BodyTooLarge,
    DigestMismatch,
    SizeInvalid,
    UploadBusy,
    UploadRangeInvalid,
    UploadUnknown,
)
from registryd.gc import hooks as gc_hooks
from registryd.names import RepositoryName
from registryd.storage import paths

log = logging.getLogger(__name__)

# A busy mark this old belongs to a request whose process died; the bytes it
# wrote past the recorded size are dropped when the session is taken over.
STALE_CLAIM_SECONDS = 600


@dataclass(frozen=True, slots=True)
class ChunkRange:
    """A PATCH's ``Content-Range: <start>-<end>`` (inclusive, no ``bytes`` unit)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True, slots=True)
class _Claim:
    upload_id: str
    repository_id: int
    size_bytes: int
    claimed_at: datetime


async def start_upload(svc: Services, name: RepositoryName) -> str:
    """Open a session in the repository (created if new); return the upload id."""
    upload_id = await svc.storage.create_upload()
    try:
        async with svc.pool.acquire() as conn, conn.transaction():
            repo = await queries.ensure_repository(conn, name)
            await queries.insert_upload(conn, upload_id, repo.repository_id)
    except BaseException:
        await svc.storage.delete_upload(upload_id)
        raise
    return upload_id


async def upload_size(svc: Services, name: RepositoryName, upload_id: str) -> int:
    """Bytes received so far (spec end-13); raise UploadUnknown."""
    if not paths.is_upload_key(upload_id):
        raise UploadUnknown()
    async with svc.pool.acquire() as conn:
        repo = await queries.fetch_repository(conn, name)
        upload = (
            await queries.fetch_upload(conn, upload_id, repo.repository_id)
            if repo is not None
            else None
        )
    if upload is None:
        raise UploadUnknown()
    return upload.size_bytes


async def cancel_upload(svc: Services, name: RepositoryName, upload_id: str) -> None:
    """Forget the session and its bytes; raise UploadUnknown."""
    if not paths.is_upload_key(upload_id):
        raise UploadUnknown()
    async with svc.pool.acquire() as conn:
        repo = await queries.fetch_repository(conn, name)
        if repo is None or await queries.fetch_upload(conn, upload_id, repo.repository_id) is None:
            raise UploadUnknown()
        await queries.delete_upload(conn, upload_id)
    svc.upload_hashes.drop(upload_id)
    await svc.storage.delete_upload(upload_id)


async def _claim(svc: Services, name: RepositoryName, upload_id: str) -> _Claim:
    if not paths.is_upload_key(upload_id):
        raise UploadUnknown()
    async with svc.pool.acquire() as conn:
        repo = await queries.fetch_repository(conn, name)
        if repo is None:
            raise UploadUnknown()
        upload = await queries.claim_upload(
            conn, upload_id, repo.repository_id, STALE_CLAIM_SECONDS
        )
        if upload is None:
            if await queries.fetch_upload(conn, upload_id, repo.repository_id) is None:
                raise UploadUnknown()
            raise UploadBusy()
    assert upload.busy_since is not None
    return _Claim(upload_id, repo.repository_id, upload.size_bytes, upload.busy_since)


async def _release(svc: Services, claim: _Claim, size_bytes: int) -> bool:
    async with svc.pool.acquire() as conn:
        return await queries.release_upload(conn, claim.upload_id, size_bytes, claim.claimed_at)


async def _forget(svc: Services, upload_id: str) -> None:
    async with svc.pool.acquire() as conn:
        await queries.delete_upload(conn, upload_id)
    svc.upload_hashes.drop(upload_id)
    await svc.storage.delete_upload(upload_id)


async def _append(
    svc: Services,
    claim: _Claim,
    body: AsyncIterator[bytes | memoryview],
    chunk_range: ChunkRange | None,
) -> int:
    """Append ``body`` at the session's end; return the new size. Runs under a claim."""
    if chunk_range is not None and chunk_range.start != claim.size_bytes:
        raise UploadRangeInvalid(claim.size_bytes)
    limit = svc.settings.max_layer_bytes
    hasher = svc.upload_hashes.take(claim.upload_id, claim.size_bytes)
    try:
        appender = await svc.storage.append_upload(claim.upload_id, claim.size_bytes, hasher)
    except UploadUnknown:
        # The row outlived its file (swept as stale): the session is gone.
        await _forget(svc, claim.upload_id)
        raise
    async with appender:
        async for chunk in body:
            if limit and appender.size_bytes + len(chunk) > limit:
                raise BodyTooLarge(limit)
            await appender.write(chunk)
        received = appender.size_bytes - claim.size_bytes
        if chunk_range is not None and received != chunk_range.length:
            raise SizeInvalid()
        size = await appender.finish()
    svc.upload_hashes.save(claim.upload_id, size, hasher)
    return size


async def append_chunk(
    svc: Services,
    name: RepositoryName,
    upload_id: str,
    body: AsyncIterator[bytes | memoryview],
    chunk_range: ChunkRange | None,
) -> int:
    """PATCH (spec end-5): append a chunk, streamed or ranged; return the session's size.

    Raises UploadUnknown, UploadBusy, UploadRangeInvalid (out of order),
    SizeInvalid, BodyTooLarge, and what ``body`` raises; a failed chunk leaves
    the session as it was.
    """
    claim = await _claim(svc, name, upload_id)
    size = claim.size_bytes
    try:
        size = await _append(svc, claim, body, chunk_range)
    finally:
        released = await _release(svc, claim, size)
    if not released:
        # Taken over as stale while we wrote: our bytes may be overwritten.
        svc.upload_hashes.drop(upload_id)
        raise UploadBusy()
    return size


async def complete_upload(
    svc: Services,
    name: RepositoryName,
    upload_id: str,
    digest: Digest,
    body: AsyncIterator[bytes | memoryview],
) -> None:
    """PUT ?digest= (spec end-6): append the final chunk, verify and store the blob.

    On DigestMismatch the session is removed with its bytes (as distribution does).
    """
    claim = await _claim(svc, name, upload_id)
    size = claim.size_bytes
    committed = False
    try:
        size = await _append(svc, claim, body, None)
        hasher = svc.upload_hashes.take(upload_id, size)
        try:
            async with svc.pool.acquire() as conn, conn.transaction():
                # The blob's row is held while its file is placed and until the link
                # commits, so garbage collection cannot remove either (gc/hooks.py).
                await gc_hooks.hold_blob(conn, digest, size)
                await svc.storage.commit_upload(upload_id, size, digest, hasher)
                await gc_hooks.link_blob(conn, claim.repository_id, digest)
                await queries.delete_upload(conn, upload_id)
        except (DigestMismatch, UploadUnknown):
            committed = True  # nothing left to release
            await _forget(svc, upload_id)
            raise
        committed = True
        svc.upload_hashes.drop(upload_id)
    finally:
        if not committed:
            await _release(svc, claim, size)


async def upload_whole_blob(
    svc: Services, name: RepositoryName, digest: Digest, body: AsyncIterator[bytes | memoryview]
) -> None:
    """Single-POST monolithic upload (spec end-4b): a session opened and completed at once."""
    upload_id = await start_upload(svc, name)
    await complete_upload(svc, name, upload_id, digest, body)


async def expire_uploads(svc: Services) -> int:
    """Remove sessions untouched for ``stale_upload_seconds`` with their bytes; return how many."""
    async with svc.pool.acquire() as conn:
        expired = await queries.delete_expired_uploads(conn, svc.settings.stale_upload_seconds)
    for upload_id in expired:
        svc.upload_hashes.drop(upload_id)
        await svc.storage.delete_upload(upload_id)
    return len(expired)
