"""S3 backend: blobs as objects of one bucket of any S3-compatible store.

Keys, under ``s3_prefix``::

    blobs/sha256/ab/ab12…ef           one object per blob, named by its digest
    uploads/t<owner>-<random>         a writer's bytes (a multipart upload while they
                                      stream in), of the process with key <owner>
    uploads/<key>[.<gen>]/session     an upload session's generation exists
    uploads/<key>[.<gen>]/p<offset>   the bytes one request appended at <offset>

Writes stream: bytes are hashed as they arrive and sent as multipart parts of
``part_bytes``, so a write holds at most one part in memory and nothing on
local disk. A blob becomes visible at its content address only after its
digest is verified: by CopyObject (UploadPartCopy in parts above 5 GiB) of
the verified object, or by completing a multipart upload whose bytes were
hashed on their way in; the multipart upload is aborted on cancel or failure,
so a failed write leaves nothing at a content address.

Upload sessions (v2 chunked uploads) must work across replicas and with
requests of any size, while S3 wants every part but the last to be at least
5 MiB. So each request's bytes become an object of their own (``p<offset>``,
written as its own multipart upload when larger than a part), and the pieces
are combined only at commit: server-side with UploadPartCopy when every piece
but the last is at least 5 MiB, otherwise read back in order and re-uploaded
as parts of a multipart upload at the content address (completed only after
the digest is verified). When the hash state lived in another process the
pieces are read back and re-hashed, as the filesystem backend re-hashes its
file. The session's offset lives in PostgreSQL; the pieces are found by
listing, and must chain from 0 to that offset exactly.

Temp objects and unfinished multipart uploads of a writer carry the owner key
of their process, so a start-up sweep aborts those of dead processes.
Credentials come from the standard AWS chain (environment, profiles, web
identity, instance roles), never from registryd's settings.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from registryd.digest import Digest, Hasher, Sha256
from registryd.errors import BlobUnknown, DigestInvalid, StorageUnavailable, UploadUnknown
from registryd.storage import hashing
from registryd.storage.base import TempFile
from registryd.storage.s3_bucket import MIN_PART_BYTES, Bucket, MultipartSink, Piece

__all__ = ["MIN_PART_BYTES", "S3Backend"]

log = logging.getLogger(__name__)

_UPLOAD_KEY_RE = re.compile(r"[a-f0-9]{32}")
_GENERATION_RE = re.compile(r"[a-f0-9]{16}")
_SESSION_RE = re.compile(r"uploads/([a-f0-9]{32})(?:\.([a-f0-9]{16}))?/(session|p[0-9]{20})")
_OWNED_RE = re.compile(r"uploads/t([a-f0-9]{8})-[a-f0-9]{32}")


class S3Blob:
    """A committed blob read with ranged GETs (``fileno`` is None)."""

    def __init__(self, backend: S3Backend, key: str, size_bytes: int) -> None:
        self._backend = backend
        self._key = key
        self._size_bytes = size_bytes

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    def fileno(self) -> None:
        return None

    def read_range(self, offset: int, count: int) -> AsyncIterator[bytes]:
        return self._backend.objects.read_object(self._key, offset, count)

    async def close(self) -> None:
        return None


async def _shielded(steps: Awaitable[Any]) -> Any:
    """Run ``steps`` to their end even if the caller is cancelled (commit is one unit)."""
    task = asyncio.ensure_future(steps)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller sees
        raise


class S3Writer:
    """A multipart upload to ``uploads/t<owner>-…`` that is copied to ``blobs/…`` on commit."""

    def __init__(self, backend: S3Backend, tee: Sha256 | None) -> None:
        self._backend = backend
        self._tee = tee
        self._hash = Sha256()
        self._sink = MultipartSink(backend.objects, backend.owned_temp_key())
        self._size_bytes = 0
        self._done = False
        # Set once the temp object exists (completed), until it is removed.
        self._temp_object = False

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    @property
    def temp_path(self) -> Path | None:
        return None

    def digest(self) -> Digest:
        return self._hash.digest()

    async def write(self, data: bytes | memoryview) -> None:
        if self._done:
            raise RuntimeError("write after commit or cancel")
        if not data:
            return
        await self._backend.hash_off_loop(data, self._hash, self._tee)
        await self._sink.write(data)
        self._size_bytes += len(data)

    async def _commit_steps(
        self, expected: Digest | None, before_store: Callable[[Digest], Awaitable[None]] | None
    ) -> Digest:
        try:
            digest = hashing.verify(self._hash.digest(), expected)
            target = self._backend.blob_key(digest)
            if not self._sink.started:
                # Small enough for one part: it goes to its address in one PutObject.
                if before_store is not None:
                    await before_store(digest)
                self._sink.key = target
                await self._sink.complete()
                return digest
            await self._sink.complete()
            self._temp_object = True
            if before_store is not None:
                await before_store(digest)
            await self._backend.objects.copy_object(
                [Piece(self._sink.key, 0, self._size_bytes)], target
            )
            return digest
        finally:
            await self._discard()

    async def _discard(self) -> None:
        await self._sink.abort()
        if self._temp_object:
            self._temp_object = False
            await self._backend.objects.delete_keys([self._sink.key])

    async def commit(
        self,
        expected: Digest | None = None,
        *,
        before_store: Callable[[Digest], Awaitable[None]] | None = None,
    ) -> Digest:
        if self._done:
            raise RuntimeError("commit after commit or cancel")
        self._done = True
        result: Digest = await _shielded(self._commit_steps(expected, before_store))
        return result

    async def cancel(self) -> None:
        if self._done:
            return
        self._done = True
        await _shielded(self._discard())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.cancel()


class S3Appender:
    """One request's bytes of an upload session, as the object ``p<offset>``."""

    def __init__(self, backend: S3Backend, key: str, offset: int, hasher: Hasher | None) -> None:
        self._backend = backend
        self._sink = MultipartSink(backend.objects, key)
        self._size_bytes = offset
        self._start = offset
        self._hasher = hasher
        self._finished = False

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    async def write(self, data: bytes | memoryview) -> None:
        if self._finished:
            raise RuntimeError("write after finish")
        if not data:
            return
        await self._backend.hash_off_loop(data, self._hasher, None)
        await self._sink.write(data)
        self._size_bytes += len(data)

    async def finish(self) -> int:
        if self._finished:
            raise RuntimeError("finish after finish")
        self._finished = True
        if self._size_bytes > self._start:
            await _shielded(self._sink.complete())
        return self._size_bytes

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._finished:
            self._finished = True
            await _shielded(self._sink.abort())


class S3Backend:
    """Blobs in ``bucket`` under ``prefix``; ``part_bytes`` per multipart part.

    ``endpoint_url`` None: AWS. ``redirect``: offer presigned GET URLs to clients.
    """

    follows_writes = False  # parts go to the bucket: nothing local grows

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        path_style: bool = False,
        part_bytes: int = 16 * 1024**2,
        redirect: bool = True,
        max_connections: int = 64,
    ) -> None:
        self.objects = Bucket(
            bucket,
            region=region,
            endpoint_url=endpoint_url,
            path_style=path_style,
            part_bytes=part_bytes,
            max_connections=max_connections,
        )
        self.redirect = redirect
        self.prefix = prefix
        self.owner = 0

    async def start(self) -> None:
        await self.objects.start()

    async def close(self) -> None:
        await self.objects.close()

    # Keys -------------------------------------------------------------------

    def blob_key(self, digest: Digest) -> str:
        """Digest is validated hex, so the key never leaves ``blobs/``."""
        return f"{self.prefix}blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"

    def owned_temp_key(self) -> str:
        return f"{self.prefix}uploads/t{self.owner:08x}-{secrets.token_hex(16)}"

    def _session_prefix(self, upload_key: str, generation: str | None) -> str:
        if _UPLOAD_KEY_RE.fullmatch(upload_key) is None:
            raise ValueError(f"not an upload key: {upload_key!r}")
        if generation is None:
            return f"{self.prefix}uploads/{upload_key}/"
        if _GENERATION_RE.fullmatch(generation) is None:
            raise ValueError(f"not a generation: {generation!r}")
        return f"{self.prefix}uploads/{upload_key}.{generation}/"

    # Plumbing shared by writers, readers and the sweeper ----------------------

    async def hash_off_loop(
        self, data: bytes | memoryview, hasher: Sha256 | Hasher | None, tee: Sha256 | None
    ) -> None:
        """Feed the hashers on executor threads (hashlib releases the GIL)."""
        loop = asyncio.get_running_loop()
        work = [loop.run_in_executor(None, h.update, data) for h in (hasher, tee) if h is not None]
        if work:
            await asyncio.shield(asyncio.gather(*work))

    # Blobs ------------------------------------------------------------------

    def writer(self, *, tee: Sha256 | None = None) -> S3Writer:
        return S3Writer(self, tee)

    async def open(self, digest: Digest, size_bytes: int | None = None) -> S3Blob:
        key = self.blob_key(digest)
        if size_bytes is not None:
            return S3Blob(self, key, size_bytes)  # one request per pull: the GET
        size = await self.objects.head(key)
        if size is None:
            raise BlobUnknown(str(digest))
        return S3Blob(self, key, size)

    async def stat(self, digest: Digest) -> int | None:
        return await self.objects.head(self.blob_key(digest))

    async def delete(self, digest: Digest) -> bool:
        key = self.blob_key(digest)
        if await self.objects.head(key) is None:
            return False
        await self.objects.delete(key)
        return True

    async def list_blobs(self) -> AsyncIterator[Digest]:
        """ListObjectsV2 of ``blobs/``; keys that are no digest are skipped."""
        root = f"{self.prefix}blobs/"
        async for item in self.objects.list_objects(root):
            parts = item["Key"][len(root) :].split("/")
            if len(parts) != 3:
                continue
            algorithm, first, name = parts
            try:
                digest = Digest.parse(f"{algorithm}:{name}")
            except DigestInvalid:
                continue
            if digest.hex[:2] == first:
                yield digest

    async def redirect_url(self, digest: Digest, expires_seconds: int) -> str | None:
        """A presigned GetObject URL (signing is local: no request), unless ``redirect``
        is off."""
        if not self.redirect:
            return None
        return await self.objects.presign_get(self.blob_key(digest), expires_seconds)

    async def check(self, min_free_bytes: int) -> str | None:
        """The bucket answers HeadBucket (an object store has no free space to report)."""
        return await self.objects.check()

    def sweep_open_files(self) -> int:
        return 0

    # Upload sessions ----------------------------------------------------------

    async def create_upload(self, upload_key: str) -> None:
        key = self._session_prefix(upload_key, None) + "session"
        await self.objects.put(key, b"")

    async def _pieces(
        self, upload_key: str, generation: str | None, size_bytes: int
    ) -> list[Piece]:
        """The pieces holding the session's first ``size_bytes``, in order; raise
        UploadUnknown when the session or some of those bytes are gone."""
        prefix = self._session_prefix(upload_key, generation)
        found: dict[int, Piece] = {}
        exists = False
        async for item in self.objects.list_objects(prefix):
            name = item["Key"][len(prefix) :]
            if name == "session":
                exists = True
            elif re.fullmatch(r"p[0-9]{20}", name):
                offset = int(name[1:])
                found[offset] = Piece(item["Key"], offset, int(item["Size"]))
        if not exists:
            raise UploadUnknown()
        chain = []
        offset = 0
        while offset < size_bytes:
            piece = found.get(offset)
            if piece is None or piece.size_bytes == 0:
                raise UploadUnknown()
            chain.append(piece)
            offset += piece.size_bytes
        if offset != size_bytes:
            raise UploadUnknown()  # bytes past the recorded size in one piece: not ours
        return chain

    async def append_upload(
        self, upload_key: str, generation: str | None, offset: int, hasher: Hasher | None
    ) -> S3Appender:
        await self._pieces(upload_key, generation, offset)
        key = self._session_prefix(upload_key, generation) + f"p{offset:020d}"
        return S3Appender(self, key, offset, hasher)

    async def fork_upload(
        self, upload_key: str, source: str | None, target: str, size_bytes: int
    ) -> None:
        """Copy the recorded pieces into generation ``target`` (server-side), then drop
        the old generation; its unfinished writes are swept once no claim holds it."""
        pieces = await self._pieces(upload_key, source, size_bytes)
        new_prefix = self._session_prefix(upload_key, target)

        async def steps() -> None:
            for piece in pieces:
                await self.objects.copy_object([piece], new_prefix + f"p{piece.offset:020d}")
            await self.objects.put(new_prefix + "session", b"")
            await self.delete_upload(upload_key, source)

        await _shielded(steps())

    async def commit_upload(
        self,
        upload_key: str,
        generation: str | None,
        size_bytes: int,
        expected: Digest,
        hasher: Hasher | None,
        *,
        before_store: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        await _shielded(
            self._commit_upload_steps(
                upload_key, generation, size_bytes, expected, hasher, before_store
            )
        )

    async def _commit_upload_steps(
        self,
        upload_key: str,
        generation: str | None,
        size_bytes: int,
        expected: Digest,
        hasher: Hasher | None,
        before_store: Callable[[], Awaitable[None]] | None,
    ) -> None:
        pieces = await self._pieces(upload_key, generation, size_bytes)
        target = self.blob_key(expected)
        composable = all(p.size_bytes >= MIN_PART_BYTES for p in pieces[:-1])
        if len(pieces) <= 1 or composable:
            if (hasher := hashing.reusable(hasher, expected)) is None:
                hasher = Hasher(expected.algorithm)
                for piece in pieces:
                    async for data in self.objects.read_object(piece.key, 0, piece.size_bytes):
                        await self.hash_off_loop(data, hasher, None)
            hashing.verify(hasher.digest(), expected)
            if before_store is not None:
                await before_store()
            if not pieces:
                await self.objects.put(target, b"")
            else:
                await self.objects.copy_object(pieces, target)
            await self._forget_session(upload_key, generation)
            return
        # Pieces too small to be parts: stream them into a multipart upload at the
        # address, hashing on the way, and complete it only once the digest matches.
        rehash = hashing.reusable(hasher, expected) is None
        check = Hasher(expected.algorithm) if rehash else hasher
        assert check is not None
        sink = MultipartSink(self.objects, target)
        try:
            for piece in pieces:
                async for data in self.objects.read_object(piece.key, 0, piece.size_bytes):
                    if rehash:
                        await self.hash_off_loop(data, check, None)
                    await sink.write(data)
            hashing.verify(check.digest(), expected)
            if before_store is not None:
                await before_store()
            # Small enough for one part or not, nothing is at the address until now.
            await sink.complete()
        finally:
            await sink.abort()
        await self._forget_session(upload_key, generation)

    async def _forget_session(self, upload_key: str, generation: str | None) -> None:
        """The session's objects once its blob is stored: as a file renamed to its
        address, they are gone (a failure leaves them to the sweeper)."""
        try:
            await self.delete_upload(upload_key, generation)
        except StorageUnavailable as exc:
            log.warning(
                "session %s committed; its objects are left to the sweeper: %s", upload_key, exc
            )

    async def delete_upload(self, upload_key: str, generation: str | None) -> None:
        prefix = self._session_prefix(upload_key, generation)
        keys = [item["Key"] async for item in self.objects.list_objects(prefix)]
        if keys:
            await self.objects.delete_keys(keys)

    # Sweeping -------------------------------------------------------------------

    def _classify(self, key: str, mtime: float, name: str, partial: bool) -> TempFile:
        relative = key[len(self.prefix) :]
        if (match := _SESSION_RE.fullmatch(relative)) is not None:
            return TempFile(name, mtime, match.group(1), match.group(2), partial=partial)
        if (match := _OWNED_RE.fullmatch(relative)) is not None:
            return TempFile(name, mtime, owner=int(match.group(1), 16), partial=partial)
        return TempFile(name, mtime, partial=partial)

    async def temp_files(self) -> list[TempFile]:
        """Objects under ``uploads/``, and unfinished multipart uploads anywhere in the
        store (``<key>#<upload id>``): a crash leaves those at content addresses too."""
        found = []
        async for item in self.objects.list_objects(f"{self.prefix}uploads/"):
            key = item["Key"]
            found.append(self._classify(key, item["LastModified"].timestamp(), key, False))
        async for upload in self.objects.list_uploads(self.prefix):
            key = upload["Key"]
            name = f"{key}#{upload['UploadId']}"
            found.append(self._classify(key, upload["Initiated"].timestamp(), name, True))
        return found

    async def remove_temp_files(self, names: list[str]) -> int:
        """Delete objects and abort multipart uploads by their ``temp_files`` names."""
        removed = 0
        objects = []
        for name in names:
            key, _, upload_id = name.partition("#")
            if not key.startswith(self.prefix):
                raise ValueError(f"not a temp object: {name!r}")
            if not upload_id:
                if not key.startswith(f"{self.prefix}uploads/"):
                    raise ValueError(f"not a temp object: {name!r}")
                objects.append(key)
                continue
            if await self.objects.abort(key, upload_id):
                removed += 1
        if objects:
            await self.objects.delete_keys(objects)
            removed += len(objects)
        return removed

    async def remove_stale_uploads(self, max_age_seconds: float) -> int:
        cutoff = time.time() - max_age_seconds
        stale = [f.name for f in await self.temp_files() if f.mtime <= cutoff]
        return await self.remove_temp_files(stale)
