"""What every storage backend must do: one suite, run against each backend.

Every test also fails on leftovers: once it ends, the store holds no temp
object (file, object or unfinished multipart upload) it did not remove.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from registryd.digest import Digest, Hasher, Sha256
from registryd.errors import BlobUnknown, DigestMismatch, UploadUnknown
from registryd.storage import paths
from registryd.storage.base import Backend, read_bytes
from registryd.storage.filesystem import FilesystemBackend
from registryd.storage.s3 import S3Backend
from tests.support.s3_server import S3Server

# The s3 backend's parts are S3's minimum, so that a few MiB take the multipart path.
PART_BYTES = 5 * 1024**2
KEY = "c" * 32


@pytest.fixture(params=["filesystem", "s3"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    store: Backend
    if request.param == "filesystem":
        store = FilesystemBackend(tmp_path / "storage")
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        store = S3Backend(
            request.getfixturevalue("s3_bucket"),
            endpoint_url=server.url,
            path_style=True,
            part_bytes=PART_BYTES,
        )
    await store.start()
    yield store
    # Nothing pending may outlive a test: every writer was committed or cancelled.
    leftovers = await store.temp_files()
    await store.close()
    assert leftovers == []


async def _read(backend: Backend, digest: Digest) -> bytes:
    blob = await backend.open(digest)
    try:
        return await read_bytes(blob, 0, blob.size_bytes)
    finally:
        await blob.close()


async def _store(backend: Backend, data: bytes) -> Digest:
    async with backend.writer() as writer:
        await writer.write(data)
        return await writer.commit()


async def _append(backend: Backend, generation: str | None, offset: int, data: bytes) -> int:
    async with await backend.append_upload(KEY, generation, offset, None) as appender:
        await appender.write(data)
        return await appender.finish()


async def test_commit_makes_bytes_readable_at_their_digest(backend: Backend) -> None:
    async with backend.writer() as writer:
        await writer.write(b"hello ")
        await writer.write(b"world")
        digest = await writer.commit()
    assert digest == Digest.sha256_of(b"hello world")
    assert writer.size_bytes == 11
    assert await backend.stat(digest) == 11
    assert await _read(backend, digest) == b"hello world"


async def test_a_blob_larger_than_a_part_streams_in_parts(backend: Backend) -> None:
    data = os.urandom(PART_BYTES) + os.urandom(PART_BYTES // 2) + b"tail"
    async with backend.writer() as writer:
        for start in range(0, len(data), 1024 * 1024):
            await writer.write(data[start : start + 1024 * 1024])
        digest = await writer.commit()
    assert digest == Digest.sha256_of(data)
    assert await backend.stat(digest) == len(data)
    assert await _read(backend, digest) == data


async def test_open_with_a_known_size_reads_the_same_and_a_vanished_blob_never_reads(
    backend: Backend,
) -> None:
    """The database's size spares the store a lookup (s3: a HEAD per pull); a blob
    removed behind the database's back is unknown at open or fails its read."""
    data = os.urandom(300_000)
    digest = await _store(backend, data)
    blob = await backend.open(digest, len(data))
    try:
        assert blob.size_bytes == len(data)
        assert await read_bytes(blob, 1000, 5000) == data[1000:6000]
    finally:
        await blob.close()
    assert await backend.delete(digest)
    backend.sweep_open_files()
    with pytest.raises((BlobUnknown, OSError)):  # noqa: PT012 - either step may say so
        blob = await backend.open(digest, len(data))
        try:
            await read_bytes(blob, 0, len(data))
        finally:
            await blob.close()


async def test_empty_blob(backend: Backend) -> None:
    async with backend.writer() as writer:
        digest = await writer.commit()
    assert digest == Digest.sha256_of(b"")
    assert await backend.stat(digest) == 0
    assert await _read(backend, digest) == b""


async def test_tee_sees_every_byte(backend: Backend) -> None:
    tee = Sha256(b"prefix")
    async with backend.writer(tee=tee) as writer:
        await writer.write(b"abc")
        await writer.commit()
    assert tee.digest() == Digest.sha256_of(b"prefixabc")


async def test_leaving_without_commit_discards(backend: Backend) -> None:
    async with backend.writer() as writer:
        await writer.write(b"never committed")
    assert await backend.stat(Digest.sha256_of(b"never committed")) is None


async def test_an_abandoned_multipart_write_is_aborted(backend: Backend) -> None:
    data = b"a" * (PART_BYTES + 1)

    async def write_then_fail() -> None:
        async with backend.writer() as writer:
            await writer.write(data)  # a part has gone out (s3)
            raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await write_then_fail()
    assert await backend.stat(Digest.sha256_of(data)) is None
    # The fixture checks that no multipart upload or temp object is left.


async def test_expected_digest_mismatch_leaves_nothing_at_either_address(
    backend: Backend,
) -> None:
    for data in (b"data", b"d" * (PART_BYTES + 7)):
        wrong = Digest.sha256_of(b"something else")
        async with backend.writer() as writer:
            await writer.write(data)
            with pytest.raises(DigestMismatch):
                await writer.commit(wrong)
        assert await backend.stat(Digest.sha256_of(data)) is None
        assert await backend.stat(wrong) is None
    assert [d async for d in backend.list_blobs()] == []


async def test_before_store_failure_stores_nothing(backend: Backend) -> None:
    async def refuse(digest: Digest) -> None:
        raise RuntimeError("the row could not be written")

    for data in (b"small", b"b" * (PART_BYTES + 3)):
        async with backend.writer() as writer:
            await writer.write(data)
            with pytest.raises(RuntimeError):
                await writer.commit(before_store=refuse)
        assert await backend.stat(Digest.sha256_of(data)) is None


async def test_same_bytes_twice_keep_one_copy(backend: Backend) -> None:
    digests = [await _store(backend, b"same") for _ in range(2)]
    assert digests[0] == digests[1]
    assert [d async for d in backend.list_blobs()] == [digests[0]]


async def test_concurrent_commits_of_one_digest_keep_one_whole_copy(backend: Backend) -> None:
    data = os.urandom(PART_BYTES + 11)
    digests = await asyncio.gather(*(_store(backend, data) for _ in range(3)))
    assert set(digests) == {Digest.sha256_of(data)}
    assert [d async for d in backend.list_blobs()] == [digests[0]]
    assert await _read(backend, digests[0]) == data


async def test_open_unknown_blob(backend: Backend) -> None:
    with pytest.raises(BlobUnknown):
        await backend.open(Digest.sha256_of(b"absent"))
    assert await backend.stat(Digest.sha256_of(b"absent")) is None


async def test_delete(backend: Backend) -> None:
    digest = await _store(backend, b"gone soon")
    assert await backend.delete(digest) is True
    assert await backend.delete(digest) is False
    assert await backend.stat(digest) is None
    with pytest.raises(BlobUnknown):
        await backend.open(digest)


async def test_a_read_under_way_survives_a_delete(backend: Backend) -> None:
    data = os.urandom(3 * 1024 * 1024)
    digest = await _store(backend, data)
    blob = await backend.open(digest)
    try:
        pieces = blob.read_range(0, blob.size_bytes)
        first = await anext(pieces)
        assert await backend.delete(digest) is True
        rest = [piece async for piece in pieces]
    finally:
        await blob.close()
    assert first + b"".join(rest) == data
    assert await backend.stat(digest) is None


async def test_ranges(backend: Backend) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    digest = await _store(backend, data)
    blob = await backend.open(digest)
    try:
        assert blob.size_bytes == len(data)
        assert await read_bytes(blob, 0, 10) == data[:10]
        assert await read_bytes(blob, 1000, 70000) == data[1000:71000]
        assert await read_bytes(blob, len(data) - 1, 1) == data[-1:]
        assert await read_bytes(blob, 5, 0) == b""
        with pytest.raises(OSError, match=r"shrank|shorter|InvalidRange"):
            await read_bytes(blob, len(data) - 10, 20)  # past the end
    finally:
        await blob.close()


async def test_redirect_url_when_offered_serves_the_bytes_and_ranges(backend: Backend) -> None:
    data = b"0123456789" * 100
    digest = await _store(backend, data)
    url = await backend.redirect_url(digest, 60)
    if isinstance(backend, FilesystemBackend):
        assert url is None  # served by the server itself (sendfile)
        return
    assert url is not None
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as whole:
            assert whole.status == 200
            assert await whole.read() == data
        async with session.get(url, headers={"Range": "bytes=10-19"}) as part:
            assert part.status == 206
            assert await part.read() == data[10:20]


async def test_list_blobs(backend: Backend) -> None:
    assert [d async for d in backend.list_blobs()] == []
    stored = {await _store(backend, bytes([n]) * n) for n in range(1, 6)}
    assert {d async for d in backend.list_blobs()} == stored


async def test_check_is_ready(backend: Backend) -> None:
    assert await backend.check(0) is None


async def test_cancel_waits_for_a_write_still_running(backend: Backend) -> None:
    """A cancelled request's write keeps going; its resources must outlive it."""
    data = b"w" * (12 * 1024 * 1024)
    async with backend.writer() as writer:
        write = asyncio.create_task(writer.write(data))
        await asyncio.sleep(0)  # the write has started
        write.cancel()
        await asyncio.gather(write, return_exceptions=True)
        await writer.cancel()
    assert await backend.stat(Digest.sha256_of(data)) is None


async def test_a_cancelled_commit_either_stores_the_blob_or_nothing(backend: Backend) -> None:
    data = b"c" * (8 * 1024 * 1024)
    async with backend.writer() as writer:
        await writer.write(data)
        commit = asyncio.create_task(writer.commit())
        await asyncio.sleep(0)
        commit.cancel()
        await asyncio.gather(commit, return_exceptions=True)
    # The fixture checks that no temp object is left; the blob is whole or absent.
    size = await backend.stat(Digest.sha256_of(data))
    assert size in (None, len(data))


# Upload sessions ----------------------------------------------------------------


@pytest.mark.parametrize("keep_hasher", [True, False], ids=["hashed", "rehashed"])
async def test_session_chunks_of_any_size_commit_as_one_blob(
    backend: Backend, keep_hasher: bool
) -> None:
    # A tiny chunk first: S3's parts must be 5 MiB, a client's PATCH need not be.
    chunks = [b"tiny", os.urandom(PART_BYTES + 5), b"", b"x" * 1000]
    data = b"".join(chunks)
    hasher = Hasher() if keep_hasher else None
    await backend.create_upload(KEY)
    size = 0
    for chunk in chunks:
        async with await backend.append_upload(KEY, None, size, hasher) as appender:
            await appender.write(chunk)
            size = await appender.finish()
    assert size == len(data)
    digest = Digest.sha256_of(data)
    await backend.commit_upload(KEY, None, size, digest, hasher)
    assert await _read(backend, digest) == data
    # The session's bytes moved to the blob: nothing of it is left behind.
    assert await backend.temp_files() == []


async def test_session_of_large_chunks_commits(backend: Backend) -> None:
    chunks = [os.urandom(PART_BYTES), os.urandom(PART_BYTES + 1), b"end"]
    data = b"".join(chunks)
    await backend.create_upload(KEY)
    size = 0
    for chunk in chunks:
        size = await _append(backend, None, size, chunk)
    await backend.commit_upload(KEY, None, size, Digest.sha256_of(data), None)
    assert await _read(backend, Digest.sha256_of(data)) == data
    await backend.delete_upload(KEY, None)


async def test_empty_session_commits_the_empty_blob(backend: Backend) -> None:
    await backend.create_upload(KEY)
    await backend.commit_upload(KEY, None, 0, Digest.sha256_of(b""), None)
    assert await backend.stat(Digest.sha256_of(b"")) == 0
    await backend.delete_upload(KEY, None)


async def test_session_digest_mismatch_leaves_nothing_at_the_content_address(
    backend: Backend,
) -> None:
    await backend.create_upload(KEY)
    size = await _append(backend, None, 0, b"first ")
    size = await _append(backend, None, size, b"second")
    wrong = Digest.sha256_of(b"not these bytes")
    for hasher in (None, Hasher()):
        with pytest.raises(DigestMismatch):
            await backend.commit_upload(KEY, None, size, wrong, hasher)
    assert await backend.stat(wrong) is None
    assert await backend.stat(Digest.sha256_of(b"first second")) is None
    assert [d async for d in backend.list_blobs()] == []
    await backend.delete_upload(KEY, None)


async def test_a_failed_chunk_leaves_the_session_as_it_was(backend: Backend) -> None:
    await backend.create_upload(KEY)
    size = await _append(backend, None, 0, b"kept")

    async def fail_mid_chunk() -> None:
        async with await backend.append_upload(KEY, None, size, None) as appender:
            await appender.write(b"z" * (PART_BYTES + 1))
            raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await fail_mid_chunk()
    size = await _append(backend, None, size, b" and more")
    await backend.commit_upload(KEY, None, size, Digest.sha256_of(b"kept and more"), None)
    assert await _read(backend, Digest.sha256_of(b"kept and more")) == b"kept and more"
    await backend.delete_upload(KEY, None)


async def test_session_errors(backend: Backend) -> None:
    with pytest.raises(UploadUnknown):
        await backend.append_upload(KEY, None, 0, None)  # never created
    await backend.create_upload(KEY)
    size = await _append(backend, None, 0, b"12345")
    with pytest.raises(UploadUnknown):
        await backend.append_upload(KEY, None, size + 1, None)  # bytes missing
    with pytest.raises(UploadUnknown):
        await backend.commit_upload(KEY, None, size + 1, Digest.sha256_of(b"123456"), None)
    await backend.delete_upload(KEY, None)
    await backend.delete_upload(KEY, None)  # a second delete is fine
    with pytest.raises(UploadUnknown):
        await backend.commit_upload(KEY, None, size, Digest.sha256_of(b"12345"), None)


async def test_a_takeover_continues_in_a_generation_of_its_own(backend: Backend) -> None:
    await backend.create_upload(KEY)
    size = await _append(backend, None, 0, b"recorded")
    await backend.fork_upload(KEY, None, "1" * 16, size)
    # The old generation is gone: whoever still writes there writes to nothing committed.
    with pytest.raises(UploadUnknown):
        await backend.append_upload(KEY, None, size, None)
    size = await _append(backend, "1" * 16, size, b" then more")
    digest = Digest.sha256_of(b"recorded then more")
    await backend.commit_upload(KEY, "1" * 16, size, digest, None)
    assert await _read(backend, digest) == b"recorded then more"
    with pytest.raises(UploadUnknown):
        await backend.fork_upload(KEY, "2" * 16, "3" * 16, 0)  # no such generation
    await backend.delete_upload(KEY, "1" * 16)


# Sweeping ----------------------------------------------------------------------


async def test_temp_objects_of_a_dead_owner_are_listed_and_removed(backend: Backend) -> None:
    backend.owner = 0xDEAD
    writer = backend.writer()
    await writer.write(b"o" * (PART_BYTES + 1))  # the process "dies" here: no cancel
    backend.owner = 0x1
    owned = [f for f in await backend.temp_files() if f.owner == 0xDEAD]
    assert owned
    assert await backend.remove_temp_files([f.name for f in owned]) == len(owned)
    assert [f for f in await backend.temp_files() if f.owner == 0xDEAD] == []
    await writer.cancel()  # late, harmless


async def test_session_objects_are_listed_with_their_key_and_generation(
    backend: Backend,
) -> None:
    await backend.create_upload(KEY)
    await _append(backend, None, 0, b"abc")
    files = await backend.temp_files()
    assert files
    assert {(f.upload_key, f.generation) for f in files} == {(KEY, None)}
    assert await backend.remove_temp_files([f.name for f in files]) == len(files)
    with pytest.raises(UploadUnknown):
        await backend.append_upload(KEY, None, 3, None)


async def test_stale_uploads_are_removed_fresh_ones_kept(backend: Backend) -> None:
    await backend.create_upload(KEY)
    assert await backend.remove_stale_uploads(3600) == 0
    assert await backend.temp_files() != []
    assert await backend.remove_stale_uploads(-1) >= 1
    assert await backend.temp_files() == []


# The filesystem backend's own layout ---------------------------------------------


async def test_content_address_layout(tmp_path: Path) -> None:
    store = FilesystemBackend(tmp_path)
    await store.start()
    async with store.writer() as writer:
        await writer.write(b"layout")
        await writer.commit()
    hex_digest = hashlib.sha256(b"layout").hexdigest()
    assert (tmp_path / "blobs" / "sha256" / hex_digest[:2] / hex_digest).read_bytes() == b"layout"


async def test_stale_files_are_judged_by_mtime(tmp_path: Path) -> None:
    store = FilesystemBackend(tmp_path)
    await store.start()
    stale = paths.uploads_dir(tmp_path) / ("a" * 32 + paths.UPLOAD_SUFFIX)
    stale.write_bytes(b"half a layer from a crashed process")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = paths.uploads_dir(tmp_path) / ("b" * 32 + paths.UPLOAD_SUFFIX)
    fresh.write_bytes(b"still streaming")
    assert await store.remove_stale_uploads(3600) == 1
    assert not stale.exists()
    assert fresh.exists()
    fresh.unlink()
