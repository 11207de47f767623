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
import contextlib
import io
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import botocore.session
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from registryd.digest import Digest, Hasher, Sha256
from registryd.errors import BlobUnknown, DigestInvalid, StorageUnavailable, UploadUnknown
from registryd.storage import hashing
from registryd.storage.base import TempFile

log = logging.getLogger(__name__)

# S3's limits: every part but the last at least 5 MiB, a CopyObject at most 5 GiB.
MIN_PART_BYTES = 5 * 1024**2
MAX_COPY_BYTES = 5 * 1024**3
# Bytes read from an object at a time (a GET body is streamed, never held whole).
READ_CHUNK_BYTES = 1024 * 1024

_UPLOAD_KEY_RE = re.compile(r"[a-f0-9]{32}")
_GENERATION_RE = re.compile(r"[a-f0-9]{16}")
_SESSION_RE = re.compile(r"uploads/([a-f0-9]{32})(?:\.([a-f0-9]{16}))?/(session|p[0-9]{20})")
_OWNED_RE = re.compile(r"uploads/t([a-f0-9]{8})-[a-f0-9]{32}")
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


@contextlib.contextmanager
def _unavailable_on_failure(operation: str) -> Any:
    """The store unreachable or failing (after botocore's retries) is StorageUnavailable:
    nothing was stored, the client may retry. Client errors of ours stay what they are."""
    try:
        yield
    except ClientError as exc:
        if _status(exc) >= 500 or _error_code(exc) in ("SlowDown", "ServiceUnavailable"):
            raise StorageUnavailable(f"object store {operation}: {exc}") from exc
        raise
    except (BotoCoreError, OSError, TimeoutError) as exc:
        raise StorageUnavailable(f"object store {operation}: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class _Piece:
    key: str
    offset: int
    size_bytes: int


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
        return self._backend.read_object(self._key, offset, count)

    async def close(self) -> None:
        return None


class _PartReader(io.RawIOBase):
    """A part's bytes as a rewindable file, without a copy: aiohttp sends it in
    pieces and botocore rewinds it to sign it (over http) or to retry."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), len(self._view) - self._position)
        buffer[:count] = self._view[self._position : self._position + count]
        self._position += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        self._position = max(0, min(base[whence] + offset, len(self._view)))
        return self._position

    def tell(self) -> int:
        return self._position

    def __len__(self) -> int:
        return len(self._view)


class _MultipartSink:
    """Bytes to one key: held until a part is full, then sent as a multipart part.

    One buffer of ``part_bytes`` per sink, filled and sent over and over: the
    only memory a write in flight holds. Nothing is visible at the key until
    ``complete``; ``abort`` removes the parts. A write that never fills a part
    is sent with one PutObject at ``complete``.
    """

    def __init__(self, backend: S3Backend, key: str) -> None:
        self._backend = backend
        self.key = key
        self._buffer: bytearray | None = None
        self._filled = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    @property
    def started(self) -> bool:
        return self._upload_id is not None

    async def write(self, data: bytes | memoryview) -> None:
        size = self._backend.part_bytes
        if self._buffer is None:
            self._buffer = bytearray(size)
        view = memoryview(data).cast("B")
        while view:
            take = min(len(view), size - self._filled)
            self._buffer[self._filled : self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
            if self._filled == size:
                await self._send_part()

    def _pending(self) -> memoryview:
        return memoryview(self._buffer if self._buffer is not None else b"")[: self._filled]

    async def _send_part(self) -> None:
        client = self._backend.client
        with _unavailable_on_failure("upload"):
            if self._upload_id is None:
                answer = await client.create_multipart_upload(
                    Bucket=self._backend.bucket, Key=self.key
                )
                self._upload_id = answer["UploadId"]
            number = len(self._parts) + 1
            with self._pending() as view:
                answer = await client.upload_part(
                    Bucket=self._backend.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    PartNumber=number,
                    Body=_PartReader(view),
                )
        self._filled = 0
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def complete(self) -> None:
        """Make the bytes visible at the key."""
        client = self._backend.client
        if self._upload_id is None:
            with _unavailable_on_failure("upload"), self._pending() as view:
                await client.put_object(
                    Bucket=self._backend.bucket, Key=self.key, Body=_PartReader(view)
                )
            self._release()
            return
        if self._filled or not self._parts:
            await self._send_part()
        self._release()
        with _unavailable_on_failure("upload"):
            await client.complete_multipart_upload(
                Bucket=self._backend.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._upload_id = None

    def _release(self) -> None:
        self._buffer = None
        self._filled = 0

    async def abort(self) -> None:
        """Drop the parts sent so far (the sweeper retries if this fails)."""
        self._release()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        try:
            await self._backend.client.abort_multipart_upload(
                Bucket=self._backend.bucket, Key=self.key, UploadId=upload_id
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            log.warning("could not abort multipart upload of %s (swept later): %r", self.key, exc)


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
        self._sink = _MultipartSink(backend, backend.owned_temp_key())
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
            await self._backend.copy_object([_Piece(self._sink.key, 0, self._size_bytes)], target)
            return digest
        finally:
            await self._discard()

    async def _discard(self) -> None:
        await self._sink.abort()
        if self._temp_object:
            self._temp_object = False
            await self._backend.delete_keys([self._sink.key])

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
        self._sink = _MultipartSink(backend, key)
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

    ``endpoint_url`` None: AWS. ``redirect``: offer presigned GET URLs to
    clients. ``copy_object_max_bytes`` and
    ``copy_part_bytes`` are S3's limits, lowered only by tests.
    """

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
        self.bucket = bucket
        self.redirect = redirect
        self.prefix = prefix
        self.owner = 0
        self.part_bytes = part_bytes
        self.copy_object_max_bytes = MAX_COPY_BYTES
        self.copy_part_bytes = 1024**3
        self._region = region
        self._endpoint_url = endpoint_url
        self._config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path" if path_style else "auto"},
            retries={"mode": "standard", "max_attempts": 3},
            # No extra CRC of every part on the event loop: SigV4 already covers the
            # payload over http, and TLS does over https.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=max_connections,
        )
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("the S3 backend is not started")
        return self._client

    async def start(self) -> None:
        session = get_session()
        # botocore reads its service models and the AWS config files from disk, once:
        # off the event loop.
        await asyncio.to_thread(_load_models, session, self._region, self._endpoint_url)
        self._client = await self._stack.enter_async_context(
            session.create_client(
                "s3",
                region_name=self._region,
                endpoint_url=self._endpoint_url,
                config=self._config,
            )
        )

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()

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

    async def read_object(self, key: str, offset: int, count: int) -> AsyncIterator[bytes]:
        """``count`` bytes of ``key`` from ``offset`` with one ranged GET, streamed."""
        if count <= 0:
            return
        try:
            with _unavailable_on_failure("read"):
                answer = await self.client.get_object(
                    Bucket=self.bucket, Key=key, Range=f"bytes={offset}-{offset + count - 1}"
                )
        except ClientError as exc:
            # Gone, or shorter than asked: what a short file read is to the filesystem.
            raise OSError(f"object {key}: {_error_code(exc) or exc}") from exc
        body = answer["Body"]
        left = count
        try:
            while left:
                with _unavailable_on_failure("read"):
                    data = await body.read(min(READ_CHUNK_BYTES, left))
                if not data:
                    raise OSError(f"object {key} shorter than expected (at byte {count - left})")
                left -= len(data)
                yield data
        finally:
            body.close()

    async def _head(self, key: str) -> int | None:
        try:
            with _unavailable_on_failure("stat"):
                answer = await self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _MISSING or _status(exc) == 404:
                return None
            raise
        return int(answer["ContentLength"])

    async def delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            with _unavailable_on_failure("delete"):
                await self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )

    async def _list(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        with _unavailable_on_failure("list"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item

    async def _list_multipart(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_multipart_uploads")
        with _unavailable_on_failure("list"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Uploads", []):
                    yield item

    async def copy_object(self, pieces: list[_Piece], target: str) -> None:
        """Place the concatenation of ``pieces`` at ``target``, server-side.

        One piece up to ``copy_object_max_bytes``: CopyObject. Otherwise a
        multipart upload of UploadPartCopy ranges (each piece but the last at least
        MIN_PART_BYTES, which the caller checked), completed at the end.
        """
        client = self.client
        if len(pieces) == 1 and pieces[0].size_bytes <= self.copy_object_max_bytes:
            with _unavailable_on_failure("copy"):
                await client.copy_object(
                    Bucket=self.bucket,
                    Key=target,
                    CopySource={"Bucket": self.bucket, "Key": pieces[0].key},
                )
            return
        with _unavailable_on_failure("copy"):
            upload_id = (await client.create_multipart_upload(Bucket=self.bucket, Key=target))[
                "UploadId"
            ]
        parts: list[dict[str, Any]] = []
        try:
            for piece in pieces:
                for start in range(0, max(piece.size_bytes, 1), self.copy_part_bytes):
                    end = min(start + self.copy_part_bytes, piece.size_bytes) - 1
                    # The last range of a piece takes a short tail along rather than
                    # leaving a part below S3's minimum.
                    if 0 < piece.size_bytes - end - 1 < MIN_PART_BYTES:
                        end = piece.size_bytes - 1
                    if start > end:
                        break
                    with _unavailable_on_failure("copy"):
                        answer = await client.upload_part_copy(
                            Bucket=self.bucket,
                            Key=target,
                            UploadId=upload_id,
                            PartNumber=len(parts) + 1,
                            CopySource={"Bucket": self.bucket, "Key": piece.key},
                            CopySourceRange=f"bytes={start}-{end}",
                        )
                    parts.append(
                        {"PartNumber": len(parts) + 1, "ETag": answer["CopyPartResult"]["ETag"]}
                    )
                    if end == piece.size_bytes - 1:
                        break
            with _unavailable_on_failure("copy"):
                await client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=target,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            with contextlib.suppress(ClientError, BotoCoreError, OSError):
                await client.abort_multipart_upload(
                    Bucket=self.bucket, Key=target, UploadId=upload_id
                )
            raise

    # Blobs ------------------------------------------------------------------

    def writer(self, *, tee: Sha256 | None = None) -> S3Writer:
        return S3Writer(self, tee)

    async def open(self, digest: Digest) -> S3Blob:
        key = self.blob_key(digest)
        size = await self._head(key)
        if size is None:
            raise BlobUnknown(str(digest))
        return S3Blob(self, key, size)

    async def stat(self, digest: Digest) -> int | None:
        return await self._head(self.blob_key(digest))

    async def delete(self, digest: Digest) -> bool:
        key = self.blob_key(digest)
        if await self._head(key) is None:
            return False
        with _unavailable_on_failure("delete"):
            await self.client.delete_object(Bucket=self.bucket, Key=key)
        return True

    async def list_blobs(self) -> AsyncIterator[Digest]:
        """ListObjectsV2 of ``blobs/``; keys that are no digest are skipped."""
        root = f"{self.prefix}blobs/"
        async for item in self._list(root):
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
        url: str = await self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.blob_key(digest)},
            ExpiresIn=expires_seconds,
        )
        return url

    async def check(self, min_free_bytes: int) -> str | None:
        """The bucket answers HeadBucket (an object store has no free space to report)."""
        try:
            with _unavailable_on_failure("check"):
                await self.client.head_bucket(Bucket=self.bucket)
        except StorageUnavailable as exc:
            return str(exc)
        except ClientError as exc:
            return f"bucket {self.bucket}: {exc}"
        return None

    def sweep_open_files(self) -> int:
        return 0

    # Upload sessions ----------------------------------------------------------

    async def create_upload(self, upload_key: str) -> None:
        key = self._session_prefix(upload_key, None) + "session"
        with _unavailable_on_failure("create_upload"):
            await self.client.put_object(Bucket=self.bucket, Key=key, Body=b"")

    async def _pieces(
        self, upload_key: str, generation: str | None, size_bytes: int
    ) -> list[_Piece]:
        """The pieces holding the session's first ``size_bytes``, in order; raise
        UploadUnknown when the session or some of those bytes are gone."""
        prefix = self._session_prefix(upload_key, generation)
        found: dict[int, _Piece] = {}
        exists = False
        async for item in self._list(prefix):
            name = item["Key"][len(prefix) :]
            if name == "session":
                exists = True
            elif re.fullmatch(r"p[0-9]{20}", name):
                offset = int(name[1:])
                found[offset] = _Piece(item["Key"], offset, int(item["Size"]))
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
                await self.copy_object([piece], new_prefix + f"p{piece.offset:020d}")
            with _unavailable_on_failure("fork_upload"):
                await self.client.put_object(
                    Bucket=self.bucket, Key=new_prefix + "session", Body=b""
                )
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
                    async for data in self.read_object(piece.key, 0, piece.size_bytes):
                        await self.hash_off_loop(data, hasher, None)
            hashing.verify(hasher.digest(), expected)
            if before_store is not None:
                await before_store()
            if not pieces:
                with _unavailable_on_failure("commit"):
                    await self.client.put_object(Bucket=self.bucket, Key=target, Body=b"")
            else:
                await self.copy_object(pieces, target)
            await self._forget_session(upload_key, generation)
            return
        # Pieces too small to be parts: stream them into a multipart upload at the
        # address, hashing on the way, and complete it only once the digest matches.
        rehash = hashing.reusable(hasher, expected) is None
        check = Hasher(expected.algorithm) if rehash else hasher
        assert check is not None
        sink = _MultipartSink(self, target)
        try:
            for piece in pieces:
                async for data in self.read_object(piece.key, 0, piece.size_bytes):
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
        keys = [item["Key"] async for item in self._list(prefix)]
        if keys:
            await self.delete_keys(keys)

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
        async for item in self._list(f"{self.prefix}uploads/"):
            key = item["Key"]
            found.append(self._classify(key, item["LastModified"].timestamp(), key, False))
        async for upload in self._list_multipart(self.prefix):
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
            try:
                with _unavailable_on_failure("sweep"):
                    await self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    )
                removed += 1
            except ClientError as exc:
                if _error_code(exc) != "NoSuchUpload":
                    raise
        if objects:
            await self.delete_keys(objects)
            removed += len(objects)
        return removed

    async def remove_stale_uploads(self, max_age_seconds: float) -> int:
        cutoff = time.time() - max_age_seconds
        stale = [f.name for f in await self.temp_files() if f.mtime <= cutoff]
        return await self.remove_temp_files(stale)


def _load_models(session: AioSession, region: str, endpoint_url: str | None) -> None:
    """Read what botocore reads from disk on first use (service models, endpoint rules,
    the AWS config files) into ``session``'s caches, so that creating the async client
    on the event loop does not block it: a synchronous client made with the same
    loader and arguments reads exactly those files."""
    session.get_scoped_config()
    warm = botocore.session.Session()
    warm.register_component("data_loader", session.get_component("data_loader"))
    client = warm.create_client(
        "s3",
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id="unused",
        aws_secret_access_key="unused",
    )
    for operation in ("list_objects_v2", "list_multipart_uploads"):
        client.get_paginator(operation)
    client.close()
