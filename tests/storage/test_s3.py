"""What only the s3 backend has: copies in parts, key prefixes, an unreachable endpoint."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from registryd.digest import Digest
from registryd.errors import StorageUnavailable
from registryd.storage.base import OpenBlob, read_bytes
from registryd.storage.s3 import MIN_PART_BYTES, S3Backend
from tests.support.s3_server import S3Server, free_port


async def _backend(server: S3Server, bucket: str, prefix: str = "") -> S3Backend:
    backend = S3Backend(
        bucket, endpoint_url=server.url, path_style=True, part_bytes=MIN_PART_BYTES, prefix=prefix
    )
    await backend.start()
    return backend


@pytest.fixture
async def store(s3_server: S3Server, s3_bucket: str) -> AsyncIterator[S3Backend]:
    backend = await _backend(s3_server, s3_bucket)
    yield backend
    leftovers = await backend.temp_files()
    await backend.close()
    assert leftovers == []


async def test_blobs_above_the_copy_limit_are_copied_in_parts(store: S3Backend) -> None:
    """CopyObject stops at 5 GiB: above it the verified object is copied with
    UploadPartCopy ranges (here with the limits lowered, so that MiBs take that path)."""
    store.objects.copy_object_max_bytes = MIN_PART_BYTES
    store.objects.copy_part_bytes = MIN_PART_BYTES
    data = os.urandom(2 * MIN_PART_BYTES + 1024 * 1024)
    async with store.writer() as writer:
        for start in range(0, len(data), 1024 * 1024):
            await writer.write(data[start : start + 1024 * 1024])
        digest = await writer.commit()
    blob: OpenBlob = await store.open(digest)
    assert blob.fileno() is None  # no local file: read in ranges
    assert await read_bytes(blob, 0, blob.size_bytes) == data


async def test_a_prefix_keeps_two_stores_in_one_bucket_apart(
    s3_server: S3Server, s3_bucket: str
) -> None:
    first = await _backend(s3_server, s3_bucket, prefix="one/")
    second = await _backend(s3_server, s3_bucket, prefix="two/")
    try:
        async with first.writer() as writer:
            await writer.write(b"only in one")
            digest = await writer.commit()
        await second.create_upload("d" * 32)
        assert [d async for d in first.list_blobs()] == [digest]
        assert [d async for d in second.list_blobs()] == []
        assert await second.stat(digest) is None
        assert await first.temp_files() == []
        assert [f.upload_key for f in await second.temp_files()] == ["d" * 32]
        with pytest.raises(ValueError, match="not a temp object"):
            await second.remove_temp_files(["one/blobs/sha256/aa/" + "a" * 64])
        await second.delete_upload("d" * 32, None)
    finally:
        await first.close()
        await second.close()


async def test_an_unreachable_endpoint_is_storage_unavailable(s3_server: S3Server) -> None:
    nowhere = S3Backend(
        "registryd-nowhere", endpoint_url=f"http://127.0.0.1:{free_port()}", path_style=True
    )
    await nowhere.start()
    try:
        reason = await nowhere.check(0)
        assert reason is not None
        assert "object store" in reason
        with pytest.raises(StorageUnavailable):
            await nowhere.stat(Digest.sha256_of(b"x"))
        async with nowhere.writer() as writer:
            await writer.write(b"x")
            with pytest.raises(StorageUnavailable):
                await writer.commit()
    finally:
        await nowhere.close()


async def test_a_missing_bucket_is_not_ready(s3_server: S3Server) -> None:
    store = await _backend(s3_server, "registryd-no-such-bucket")
    try:
        reason = await store.check(0)
        assert reason is not None
        assert "registryd-no-such-bucket" in reason
    finally:
        await store.close()
