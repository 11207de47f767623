"""A GetObject body streamed to the caller with bounded read-ahead.

aiobotocore hands back aiohttp's response stream. Its ``read(n)`` joins every
piece buffered so far into one new bytes object (a copy of each byte on top
of the two the HTTP client already made), and the stream stops reading the
socket once 128 KiB are buffered, so a proxied pull alternated between
filling that small buffer and writing it out. Here each piece the client
parsed is handed on as it is (``readchunk``: no join), and the stream may
read ahead up to ``2 * READ_AHEAD_BYTES`` while the caller writes the
previous piece to its client: the S3 connection keeps flowing during the
write, and memory per stream stays bounded (see ``READ_AHEAD_BYTES``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from registryd.errors import StorageUnavailable

# The response stream reads the socket until it holds 2 x this, then pauses until
# the caller has taken it below this again. A proxied stream therefore holds at
# most 2 x READ_AHEAD_BYTES of read-ahead plus the one piece being written (at
# most the event loop's socket read size, 256 KiB with uvloop): about 1.3 MiB.
READ_AHEAD_BYTES = 512 * 1024


async def stream_body(body: Any, key: str, count: int) -> AsyncIterator[bytes]:
    """``count`` bytes of the GetObject ``body`` of ``key``, piece by piece; the body is
    closed (its connection released, or dropped when unread bytes remain) at the end,
    on error, or when the caller stops early. A body shorter than ``count`` is
    OSError, a failing connection StorageUnavailable."""
    content = body.raw_stream.content
    # aiohttp's StreamReader sizes its buffer with this (3.14); without it, reads are
    # only slower (the 128 KiB default), never wrong.
    if (set_size := getattr(content, "set_read_chunk_size", None)) is not None:
        set_size(READ_AHEAD_BYTES)
    left = count
    try:
        while left:
            try:
                data, end_of_http_chunk = await content.readchunk()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise StorageUnavailable(f"object store read: {exc!r}") from exc
            if not data:
                if end_of_http_chunk:
                    continue  # a boundary of Transfer-Encoding: chunked
                raise OSError(f"object {key} shorter than expected (at byte {count - left})")
            if len(data) > left:
                data = data[:left]  # never more than asked, whatever the store sent
            left -= len(data)
            yield data
    finally:
        body.close()
