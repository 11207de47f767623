"""The s3 backend's streams: a read with read-ahead returns exactly the bytes asked for and
releases its connection however it ends; a write holds one part buffer, and none after."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from registryd.digest import Digest
from registryd.storage.base import read_bytes
from registryd.storage.s3 import MIN_PART_BYTES, S3Backend
from registryd.storage.s3_body import READ_AHEAD_BYTES
from registryd.storage.s3_bucket import part_buffers_in_use
from tests.support.s3_server import S3Server

# Few connections, so that a read that kept one would starve the next reads.
CONNECTIONS = 2


@pytest.fixture
async def store(s3_server: S3Server, s3_bucket: str) -> AsyncIterator[S3Backend]:
    backend = S3Backend(
        s3_bucket,
        endpoint_url=s3_server.url,
        path_style=True,
        part_bytes=MIN_PART_BYTES,
        max_connections=CONNECTIONS,
    )
    await backend.start()
    yield backend
    leftovers = await backend.temp_files()
    await backend.close()
    assert leftovers == []


async def _store_bytes(store: S3Backend, data: bytes) -> str:
    async with store.writer() as writer:
        for start in range(0, len(data), 1024 * 1024):
            await writer.write(data[start : start + 1024 * 1024])
        digest = await writer.commit()
    return str(digest)


async def test_ranges_across_the_read_ahead_are_exact(store: S3Backend) -> None:
    data = os.urandom(6 * READ_AHEAD_BYTES + 123)
    digest = await _store_bytes(store, data)

    blob = await store.open(Digest.parse(digest))
    ranges = [
        (0, len(data)),
        (1, READ_AHEAD_BYTES),
        (READ_AHEAD_BYTES - 7, 2 * READ_AHEAD_BYTES + 14),
        (len(data) - 1, 1),
        (3 * READ_AHEAD_BYTES, 0),
    ]
    for offset, count in ranges:
        assert await read_bytes(blob, offset, count) == data[offset : offset + count]


async def test_reads_given_up_mid_body_release_their_connections(store: S3Backend) -> None:
    """A client that goes away mid-body stops the read after its first piece: the body is
    closed, so more such reads than the pool has connections leave the next read able to
    run (a leaked connection would make it wait for one forever)."""

    data = os.urandom(8 * READ_AHEAD_BYTES)
    blob = await store.open(Digest.parse(await _store_bytes(store, data)))
    for _ in range(3 * CONNECTIONS):
        pieces = blob.read_range(0, len(data))
        first = await anext(pieces)
        assert data.startswith(first)
        await pieces.aclose()  # type: ignore[attr-defined]
    # Also cancelled while its client write waits, as a handler is on disconnect.
    for _ in range(3 * CONNECTIONS):
        started, never = asyncio.Event(), asyncio.Event()

        async def read_all(started: asyncio.Event = started, never: asyncio.Event = never) -> None:
            async for _piece in blob.read_range(0, len(data)):
                started.set()
                await never.wait()

        task = asyncio.create_task(read_all())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    got = await asyncio.wait_for(read_bytes(blob, 0, len(data)), timeout=30)
    assert got == data


async def test_a_write_holds_one_part_buffer_and_none_once_done(store: S3Backend) -> None:
    """However many parts it sends, a write holds one part's buffer, refilled; commit and
    cancel give it back. Two writes at once hold two."""
    base = part_buffers_in_use()
    chunk = os.urandom(1024 * 1024)
    parts = 3
    first, second = store.writer(), store.writer()
    peak = 0
    for _ in range(parts * MIN_PART_BYTES // len(chunk) + 1):
        await first.write(chunk)
        await second.write(chunk)
        peak = max(peak, part_buffers_in_use() - base)
    assert peak == 2
    await first.commit()
    assert part_buffers_in_use() - base == 1
    await second.cancel()
    assert part_buffers_in_use() == base


class _Stop(Exception):
    pass


async def _payload_hash_sent(endpoint_url: str, bucket: str) -> str:
    """The X-Amz-Content-SHA256 an UploadPart of the backend on ``endpoint_url`` would send
    (the request is stopped just before it goes out)."""
    backend = S3Backend(bucket, endpoint_url=endpoint_url, path_style=True)
    await backend.start()
    sent: list[str] = []

    def capture(request: object, **kwargs: object) -> None:
        value = request.headers["X-Amz-Content-SHA256"]  # type: ignore[attr-defined]
        sent.append(value.decode() if isinstance(value, bytes) else value)
        raise _Stop()

    client = backend.objects.client
    client.meta.events.register("before-send.s3.UploadPart", capture)
    try:
        with pytest.raises(_Stop):
            await client.upload_part(
                Bucket=bucket, Key="k", UploadId="u", PartNumber=1, Body=b"part bytes"
            )
    finally:
        await backend.close()
    return sent[0]


async def test_parts_are_signed_with_their_hash_over_http_only(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """Over plain http the part's SHA-256 in the signature is what protects its bytes in
    transit; over https TLS does, and the part is not hashed a second time."""
    import hashlib

    assert await _payload_hash_sent(s3_server.url, s3_bucket) == (
        hashlib.sha256(b"part bytes").hexdigest()
    )
    secure = s3_server.url.replace("http://", "https://")
    assert await _payload_hash_sent(secure, s3_bucket) == "UNSIGNED-PAYLOAD"


async def test_a_write_of_one_part_is_one_put_and_a_part_goes_once_more_follows(
    store: S3Backend,
) -> None:
    """A full part is sent only when bytes past it arrive: a write of exactly one part never
    starts a multipart upload (it is stored with one PutObject at commit, after the
    caller's buffers are gone); one byte more sends the first part."""
    data = os.urandom(MIN_PART_BYTES)
    single = store.writer()
    await single.write(data)
    assert [f for f in await store.temp_files() if f.partial] == []
    digest = await single.commit()
    assert await read_bytes(await store.open(digest), 0, len(data)) == data

    longer = store.writer()
    await longer.write(data)
    await longer.write(b"x")
    assert len([f for f in await store.temp_files() if f.partial]) == 1
    await longer.cancel()
