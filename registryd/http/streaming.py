"""Request bodies in, blob bodies out, without ever holding a whole body in memory."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.client_exceptions import ClientPayloadError
from aiohttp.http_writer import StreamWriter

from registryd.errors import BodyIncomplete, BodyTooLarge
from registryd.storage.base import OpenBlob

# Bytes handed to the storage writer at a time: large enough that hashing and
# the executor hop are cheap per byte, small enough to keep memory flat.
WRITE_CHUNK_BYTES = 1024 * 1024
READ_CHUNK_BYTES = 1024 * 1024


def _check_declared_length(request: web.Request, max_bytes: int) -> None:
    if max_bytes and request.content_length is not None and request.content_length > max_bytes:
        raise BodyTooLarge(max_bytes)


async def body_chunks(request: web.Request, max_bytes: int) -> AsyncIterator[bytes]:
    """Yield the request body in chunks of about WRITE_CHUNK_BYTES.

    ``max_bytes`` (0: unlimited) is enforced before reading, from
    Content-Length, and again while reading, for chunked bodies. Raises
    BodyTooLarge, or BodyIncomplete when the client goes away mid-body.
    """
    _check_declared_length(request, max_bytes)
    buffer = bytearray()
    total = 0
    try:
        while True:
            data = await request.content.readany()
            if not data:
                break
            total += len(data)
            if max_bytes and total > max_bytes:
                raise BodyTooLarge(max_bytes)
            buffer += data
            if len(buffer) >= WRITE_CHUNK_BYTES:
                yield bytes(buffer)
                buffer.clear()
    except (ClientPayloadError, ConnectionError, asyncio.IncompleteReadError) as exc:
        raise BodyIncomplete() from exc
    if request.content_length is not None and total != request.content_length:
        raise BodyIncomplete()
    if buffer:
        yield bytes(buffer)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole (small) body, at most ``max_bytes``; raise BodyTooLarge/BodyIncomplete."""
    parts = [chunk async for chunk in body_chunks(request, max_bytes)]
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
    ignored (None). Raises RangeNotSatisfiable when the start is past the end.
    """
    if header is None:
        return None
    match = _RANGE_RE.match(header)
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
        return None
    if start >= size:
        raise RangeNotSatisfiable()
    end = min(int(last), size - 1) if last else size - 1
    return ByteRange(start, end)


async def send_blob(
    request: web.Request,
    blob: OpenBlob,
    headers: dict[str, str],
) -> web.StreamResponse:
    """Serve ``blob`` (whole, or the requested range) and close it.

    Uses the loop's zero-copy sendfile where the loop has one and falls back
    to reading in READ_CHUNK_BYTES pieces off the loop otherwise.
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
        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = "application/octet-stream"
        response.content_length = count
        writer = await response.prepare(request)
        assert writer is not None
        if request.method != "HEAD" and count:
            await _send_file_range(request, response, writer, blob, offset, count)
        await response.write_eof()
        return response
    finally:
        await blob.close()


async def _send_file_range(
    request: web.Request,
    response: web.StreamResponse,
    writer: AbstractStreamWriter,
    blob: OpenBlob,
    offset: int,
    count: int,
) -> None:
    loop = asyncio.get_running_loop()
    transport = request.transport
    if transport is not None and transport.get_extra_info("sslcontext") is None:
        try:
            # aiohttp buffers the status line and headers until the first body
            # write; sendfile bypasses the writer, so flush them first.
            if isinstance(writer, StreamWriter):
                writer.send_headers()
            await writer.drain()
            await loop.sendfile(transport, blob.file, offset, count, fallback=False)
            return
        except (NotImplementedError, asyncio.SendfileNotAvailableError):
            pass  # uvloop has no loop.sendfile; copy through a thread instead.
    fd = blob.file.fileno()
    end = offset + count
    while offset < end:
        data = await loop.run_in_executor(
            None, os.pread, fd, min(READ_CHUNK_BYTES, end - offset), offset
        )
        if not data:
            raise ConnectionResetError("blob shrank while being served")
        await response.write(data)
        offset += len(data)
