"""One S3 bucket through aiobotocore: the object operations the s3 backend is built on.

Errors: the store unreachable, failing or throttling (after botocore's own
retries) is StorageUnavailable (503, retry); a missing object is None or
OSError where a read expected bytes; anything else is a bug of ours (500).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import mmap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import botocore.session
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from registryd.errors import StorageUnavailable
from registryd.storage.s3_body import stream_body

log = logging.getLogger(__name__)

# S3's limits: every part but the last at least 5 MiB, a CopyObject at most 5 GiB.
MIN_PART_BYTES = 5 * 1024**2
MAX_COPY_BYTES = 5 * 1024**3

_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


@contextlib.contextmanager
def unavailable_on_failure(operation: str) -> Iterator[None]:
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
class Piece:
    """An object holding bytes ``offset``… of something larger (a session's chunk)."""

    key: str
    offset: int
    size_bytes: int


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

    def read(self, size: int | None = -1) -> memoryview:
        """A view of the next ``size`` bytes, not a copy: the HTTP client sends it and
        botocore hashes it, both before the part's buffer is refilled."""
        end = len(self._view) if size is None or size < 0 else self._position + size
        piece = self._view[self._position : end]
        self._position += len(piece)
        return piece

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


_part_buffers = 0


def part_buffers_in_use() -> int:
    """How many part buffers the sinks of this process hold right now."""
    return _part_buffers


def _part_buffer(size: int) -> mmap.mmap:
    """A part's buffer, mapped straight from the kernel rather than from malloc.

    glibc raises its mmap threshold (up to 32 MiB) each time a mapped block is
    freed, so after the first part a ``bytearray`` of a part's size comes from the
    heap, where freed parts fragment and stay resident: about 3 MiB per upload on
    top of its part at 32 concurrent uploads. A mapping is touched only as far as
    it is filled and goes back to the kernel once the last view of it is gone.
    """
    global _part_buffers
    _part_buffers += 1
    return mmap.mmap(-1, size)


class MultipartSink:
    """Bytes to one key: held until a part is full, then sent as a multipart part.

    One buffer of ``part_bytes`` per sink, filled and sent over and over: the
    only memory a write in flight holds (the HTTP client sends views of it and
    botocore signs it without copying it). Nothing is visible at the key until
    ``complete``; ``abort`` removes the parts. A write of at most one part
    is sent with one PutObject at ``complete``.
    """

    def __init__(self, bucket: Bucket, key: str) -> None:
        self._bucket = bucket
        self.key = key
        self._buffer: mmap.mmap | None = None
        self._filled = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    @property
    def started(self) -> bool:
        return self._upload_id is not None

    async def write(self, data: bytes | memoryview) -> None:
        size = self._bucket.part_bytes
        if self._buffer is None:
            self._buffer = _part_buffer(size)
        view = memoryview(data).cast("B")
        while view:
            # A full part goes out only once more bytes follow: a write of at most
            # one part then ends as one PutObject at ``complete``, after the caller
            # has let go of its own buffers, instead of a multipart upload sent while
            # they are still held.
            if self._filled == size:
                await self._send_part()
            take = min(len(view), size - self._filled)
            self._buffer[self._filled : self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]

    def _pending(self) -> memoryview:
        return memoryview(self._buffer if self._buffer is not None else b"")[: self._filled]

    async def _send_part(self) -> None:
        client = self._bucket.client
        with unavailable_on_failure("upload"):
            if self._upload_id is None:
                answer = await client.create_multipart_upload(
                    Bucket=self._bucket.name, Key=self.key
                )
                self._upload_id = answer["UploadId"]
            number = len(self._parts) + 1
            with self._pending() as view:
                answer = await client.upload_part(
                    Bucket=self._bucket.name,
                    Key=self.key,
                    UploadId=self._upload_id,
                    PartNumber=number,
                    Body=_PartReader(view),
                )
        self._filled = 0
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def complete(self) -> None:
        """Make the bytes visible at the key."""
        client = self._bucket.client
        if self._upload_id is None:
            with unavailable_on_failure("upload"), self._pending() as view:
                await client.put_object(
                    Bucket=self._bucket.name, Key=self.key, Body=_PartReader(view)
                )
            self._release()
            return
        if self._filled or not self._parts:
            await self._send_part()
        self._release()
        with unavailable_on_failure("upload"):
            await client.complete_multipart_upload(
                Bucket=self._bucket.name,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._upload_id = None

    def _release(self) -> None:
        global _part_buffers
        if self._buffer is not None:
            _part_buffers -= 1
        # Dropped, not closed: a view the HTTP client still holds (a request given
        # up mid-send) keeps the mapping alive until it is collected.
        self._buffer = None
        self._filled = 0

    async def abort(self) -> None:
        """Drop the parts sent so far (the sweeper retries if this fails)."""
        self._release()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        try:
            await self._bucket.client.abort_multipart_upload(
                Bucket=self._bucket.name, Key=self.key, UploadId=upload_id
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            log.warning("could not abort multipart upload of %s (swept later): %r", self.key, exc)


class Bucket:
    """The bucket ``name``; ``part_bytes`` per multipart part. ``copy_object_max_bytes``
    and ``copy_part_bytes`` are S3's limits, lowered only by tests."""

    def __init__(
        self,
        name: str,
        *,
        region: str,
        endpoint_url: str | None,
        path_style: bool,
        part_bytes: int,
        max_connections: int = 64,
    ) -> None:
        self.name = name
        self.part_bytes = part_bytes
        self.copy_object_max_bytes = MAX_COPY_BYTES
        self.copy_part_bytes = 1024**3
        self._region = region
        self._endpoint_url = endpoint_url
        # Part bodies are hashed with SHA-256 for SigV4 unless told not to (botocore
        # skips it on its own only when a Content-MD5 or flexible checksum is sent, and
        # none is, below): the same hash again on the event loop, about 0.85 s of CPU
        # per GB and ~15 ms stalls per 16 MiB part. Over TLS, whose MAC already
        # protects the bytes in transit, the payload goes as UNSIGNED-PAYLOAD; over
        # plain http the signed hash is what protects them, so it stays.
        secure = endpoint_url is None or endpoint_url.lower().startswith("https://")
        s3_options: dict[str, Any] = {"addressing_style": "path" if path_style else "auto"}
        if secure:
            s3_options["payload_signing_enabled"] = False
        self._config = AioConfig(
            signature_version="s3v4",
            s3=s3_options,
            retries={"mode": "standard", "max_attempts": 3},
            # No extra CRC of every part or GET body on the event loop: the signed
            # payload hash covers parts over http and TLS does over https, and every
            # blob's digest is verified by registryd itself.
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
            raise RuntimeError("the bucket is not started")
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

    async def read_object(self, key: str, offset: int, count: int) -> AsyncIterator[bytes]:
        """``count`` bytes of ``key`` from ``offset`` with one ranged GET, streamed."""
        if count <= 0:
            return
        try:
            with unavailable_on_failure("read"):
                answer = await self.client.get_object(
                    Bucket=self.name, Key=key, Range=f"bytes={offset}-{offset + count - 1}"
                )
        except ClientError as exc:
            # Gone, or shorter than asked: what a short file read is to the filesystem.
            raise OSError(f"object {key}: {_error_code(exc) or exc}") from exc
        async for data in stream_body(answer["Body"], key, count):
            yield data

    async def head(self, key: str) -> int | None:
        try:
            with unavailable_on_failure("stat"):
                answer = await self.client.head_object(Bucket=self.name, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _MISSING or _status(exc) == 404:
                return None
            raise
        return int(answer["ContentLength"])

    async def delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            with unavailable_on_failure("delete"):
                await self.client.delete_objects(
                    Bucket=self.name,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )

    async def list_objects(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        with unavailable_on_failure("list"):
            async for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item

    async def list_uploads(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_multipart_uploads")
        with unavailable_on_failure("list"):
            async for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
                for item in page.get("Uploads", []):
                    yield item

    async def copy_object(self, pieces: list[Piece], target: str) -> None:
        """Place the concatenation of ``pieces`` at ``target``, server-side.

        One piece up to ``copy_object_max_bytes``: CopyObject. Otherwise a
        multipart upload of UploadPartCopy ranges (each piece but the last at least
        MIN_PART_BYTES, which the caller checked), completed at the end.
        """
        client = self.client
        if len(pieces) == 1 and pieces[0].size_bytes <= self.copy_object_max_bytes:
            with unavailable_on_failure("copy"):
                await client.copy_object(
                    Bucket=self.name,
                    Key=target,
                    CopySource={"Bucket": self.name, "Key": pieces[0].key},
                )
            return
        with unavailable_on_failure("copy"):
            upload_id = (await client.create_multipart_upload(Bucket=self.name, Key=target))[
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
                    with unavailable_on_failure("copy"):
                        answer = await client.upload_part_copy(
                            Bucket=self.name,
                            Key=target,
                            UploadId=upload_id,
                            PartNumber=len(parts) + 1,
                            CopySource={"Bucket": self.name, "Key": piece.key},
                            CopySourceRange=f"bytes={start}-{end}",
                        )
                    parts.append(
                        {"PartNumber": len(parts) + 1, "ETag": answer["CopyPartResult"]["ETag"]}
                    )
                    if end == piece.size_bytes - 1:
                        break
            with unavailable_on_failure("copy"):
                await client.complete_multipart_upload(
                    Bucket=self.name,
                    Key=target,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            with contextlib.suppress(ClientError, BotoCoreError, OSError):
                await client.abort_multipart_upload(
                    Bucket=self.name, Key=target, UploadId=upload_id
                )
            raise

    async def put(self, key: str, data: bytes) -> None:
        with unavailable_on_failure("upload"):
            await self.client.put_object(Bucket=self.name, Key=key, Body=data)

    async def delete(self, key: str) -> None:
        with unavailable_on_failure("delete"):
            await self.client.delete_object(Bucket=self.name, Key=key)

    async def abort(self, key: str, upload_id: str) -> bool:
        """Abort a multipart upload; False if it was gone already."""
        try:
            with unavailable_on_failure("abort"):
                await self.client.abort_multipart_upload(
                    Bucket=self.name, Key=key, UploadId=upload_id
                )
        except ClientError as exc:
            if _error_code(exc) != "NoSuchUpload":
                raise
            return False
        return True

    async def presign_get(self, key: str, expires_seconds: int) -> str:
        """A presigned GetObject URL (signed locally: no request)."""
        url: str = await self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.name, "Key": key}, ExpiresIn=expires_seconds
        )
        return url

    async def check(self) -> str | None:
        """None when the bucket answers HeadBucket, else why not."""
        try:
            with unavailable_on_failure("check"):
                await self.client.head_bucket(Bucket=self.name)
        except StorageUnavailable as exc:
            return str(exc)
        except ClientError as exc:
            return f"bucket {self.name}: {exc}"
        return None


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
