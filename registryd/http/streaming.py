"""Request bodies in, blob bodies out, without ever holding a whole body in memory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.client_exceptions import ClientPayloadError
from aiohttp.http_writer import StreamWriter

from registryd.errors import BodyIncomplete, BodyTooLarge
from registryd.http import sendfile
from registryd.http.middleware import REQUEST_ID
from registryd.storage.base import OpenBlob

log = logging.getLogger(__name__)

# Bytes handed to the storage writer at a time: large enough that hashing and
# the executor hop are cheap per byte, small enough to keep memory flat.
WRITE_CHUNK_BYTES = 1024 * 1024
# Bytes of a blob file read at a time where it cannot be sent with sendfile.
READ_CHUNK_BYTES = 1024 * 1024
# Request body buffers this large come from mmap, not malloc (see _buffer).
MAPPED_BUFFER_BYTES = 256 * 1024


def _check_declared_length(request: web.Request, max_bytes: int) -> None:
    if max_bytes and request.content_length is not None and request.content_length > max_bytes:
        raise BodyTooLarge(max_bytes)


def _buffer(size: int) -> bytearray | mmap.mmap:
    """A writable buffer; chunk-sized ones are mapped straight from the kernel.

    From malloc, MiB-sized buffers end up in the main heap (glibc raises its
    mmap threshold after the first one is freed), where fragmentation keeps
    them resident long after the uploads are gone. A private mapping is
    returned to the kernel as soon as the last view of it is released.
    """
    if size < MAPPED_BUFFER_BYTES:
        return bytearray(size)
    return mmap.mmap(-1, size)


async def body_chunks(request: web.Request, max_bytes: int) -> AsyncIterator[memoryview]:
    """Yield the request body in chunks of WRITE_CHUNK_BYTES (the last one shorter).

    Every chunk is a view of one buffer per request that is refilled for the
    next chunk: use it (hash, write) before asking for the next one and never
    keep it. One buffer, no per-chunk allocation or copy out, is what keeps an
    upload's memory flat and the allocator from fragmenting.

    ``max_bytes`` (0: unlimited) is enforced before reading, from
    Content-Length, and again while reading, for chunked bodies. Raises
    BodyTooLarge, or BodyIncomplete when the client goes away mid-body.
    """
    _check_declared_length(request, max_bytes)
    if not request.can_read_body:
        return
    declared = request.content_length
    # A small body (JSON, a tag) gets a buffer of its own size, not a whole chunk.
    chunk = memoryview(
        _buffer(WRITE_CHUNK_BYTES if declared is None else min(declared, WRITE_CHUNK_BYTES))
    )
    filled = 0
    total = 0
    try:
        while True:
            # One buffered piece at a time: readany() would first join everything
            # buffered into a new bytes object, a copy of up to ~1 MiB per call.
            data, end_of_http_chunk = await request.content.readchunk()
            if not data:
                if end_of_http_chunk:
                    continue  # a chunk boundary of Transfer-Encoding: chunked
                break
            total += len(data)
            if max_bytes and total > max_bytes:
                raise BodyTooLarge(max_bytes)
            if declared is not None and total > declared:
                raise BodyIncomplete()  # aiohttp never gives more; guards the buffer size
            received = memoryview(data)
            while received:
                take = min(len(received), len(chunk) - filled)
                chunk[filled : filled + take] = received[:take]
                filled += take
                received = received[take:]
                if filled == len(chunk):
                    yield chunk
                    filled = 0
    except (ClientPayloadError, ConnectionError, asyncio.IncompleteReadError) as exc:
        raise BodyIncomplete() from exc
    if declared is not None and total != declared:
        raise BodyIncomplete()
    if filled:
        last = chunk[:filled]
        yield last
        chunk = last
    # The buffer goes back to the kernel as the body ends, not when the caller's loop
    # variable goes: a caller may store the bytes (a PutObject) after its loop. So the
    # view it was last given is released (using it after asking for more was never
    # allowed); one still exported (a hash running in a thread) is left to the GC.
    with contextlib.suppress(BufferError):
        chunk.release()


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole (small) body, at most ``max_bytes``; raise BodyTooLarge/BodyIncomplete."""
    parts = [bytes(chunk) async for chunk in body_chunks(request, max_bytes)]
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class RangeNotSatisfiable(Exception):
    pass


_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """One RFC 7233 byte range (v1 spec §8), or None to serve the whole body.

    The end is clamped to the last byte, which also absorbs docker's
    ``bytes=<n>-<size>`` off-by-one. Malformed and multi-range headers are
    ignored (None). Raises RangeNotSatisfiable when the start is past the end
    or the end is before the start.
    """
    if header is None:
        return None
    match = _RANGE_RE.fullmatch(header)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable()
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    if last and int(last) < start:
        # "bytes=500-0": well-formed but selects nothing; 416, as RFC 9110 and the
        # OCI conformance suite expect, rather than silently sending everything.
        raise RangeNotSatisfiable()
    if start >= size:
        raise RangeNotSatisfiable()
    end = min(int(last), size - 1) if last else size - 1
    return ByteRange(start, end)


async def send_blob(
    request: web.Request,
    blob: OpenBlob,
    headers: dict[str, str],
    *,
    zero_copy: bool = True,
) -> web.StreamResponse:
    """Serve ``blob`` (whole, or the requested range) and close it.

    With ``zero_copy`` and a blob in a local file the kernel moves the bytes
    (``sendfile``, on any event loop); over TLS, with ``zero_copy`` off, or for a
    blob that is no local file (an object store's), they are read in bounded
    pieces (``OpenBlob.read_range``) and written through the response, each
    write waiting for the client to drain, so memory stays flat.
    """
    try:
        size = blob.size_bytes
        headers = {**headers, "Accept-Ranges": "bytes"}
        try:
            byte_range = parse_range(request.headers.get("Range"), size)
        except RangeNotSatisfiable:
            headers["Content-Range"] = f"bytes */{size}"
            # An empty body: Content-Length 0, which docker reads as EOF on resume.
            return web.Response(status=416, headers=headers)
        if byte_range is None:
            status, offset, count = 200, 0, size
        else:
            status, offset, count = 206, byte_range.start, byte_range.length
            headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
        # As headers, not through the response's setters, which parse and rebuild them.
        headers["Content-Type"] = "application/octet-stream"
        headers["Content-Length"] = str(count)
        response = web.StreamResponse(status=status, headers=headers)
        writer = await response.prepare(request)
        assert writer is not None
        if request.method != "HEAD" and count:
            try:
                await _send_body(request, writer, response, blob, offset, count, zero_copy)
            except ConnectionError:
                log.info(
                    "request %s %s: client went away mid-body (499)", _rid(request), request.path
                )
                _abort(request)
                return response  # aiohttp finds the transport closed and only logs access
            except BaseException:
                _abort(request)  # part of a body went out: an error response cannot follow it
                raise
        await response.write_eof()
        return response
    finally:
        await blob.close()


async def _send_body(
    request: web.Request,
    writer: AbstractStreamWriter,
    response: web.StreamResponse,
    blob: OpenBlob,
    offset: int,
    count: int,
    zero_copy: bool,
) -> None:
    fd = blob.fileno() if zero_copy else None
    sock = sendfile.usable(request.transport) if fd is not None else None
    if fd is not None and sock is not None and isinstance(writer, StreamWriter):
        # aiohttp buffers the status line and headers until the first body
        # write; sendfile bypasses the writer, so hand them over first.
        with sendfile.corked(sock):
            writer.send_headers()
            await sendfile.send_file_range(
                request.transport,  # type: ignore[arg-type]  # checked by usable()
                sock,
                fd,
                offset,
                count,
            )
    else:
        async for data in blob.read_range(offset, count):
            await response.write(data)


def _rid(request: web.Request) -> str:
    return str(request.get(REQUEST_ID, "-"))


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()
