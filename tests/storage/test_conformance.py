"""What every storage backend must do; each test also fails on leftover temp files."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registryd.digest import Digest, Sha256
from registryd.errors import BlobUnknown, DigestMismatch
from registryd.storage import paths
from registryd.storage.base import Backend
from registryd.storage.filesystem import FilesystemBackend


@pytest.fixture(params=["filesystem"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    assert request.param == "filesystem"
    store = FilesystemBackend(tmp_path / "storage")
    await store.start()
    yield store
    store.close()
    # Nothing pending may outlive a test: every writer was committed or cancelled.
    assert list(paths.uploads_dir(store.root).iterdir()) == []


async def _read(backend: Backend, digest: Digest) -> bytes:
    blob = await backend.open(digest)
    try:
        return os.pread(blob.fileno(), blob.size_bytes, 0)
    finally:
        await blob.close()


async def test_commit_makes_bytes_readable_at_their_digest(backend: Backend) -> None:
    async with backend.writer() as writer:
        await writer.write(b"hello ")
        await writer.write(b"world")
        digest = await writer.commit()
    assert digest == Digest.sha256_of(b"hello world")
    assert writer.size_bytes == 11
    assert await backend.stat(digest) == 11
    assert await _read(backend, digest) == b"hello world"


async def test_empty_blob(backend: Backend) -> None:
    async with backend.writer() as writer:
        digest = await writer.commit()
    assert digest == Digest.sha256_of(b"")
    assert await backend.stat(digest) == 0


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


async def test_exception_inside_discards(backend: Backend) -> None:
    async def write_then_fail() -> None:
        async with backend.writer() as writer:
            await writer.write(b"x" * 1000)
            raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await write_then_fail()
    assert await backend.stat(Digest.sha256_of(b"x" * 1000)) is None


async def test_expected_digest_mismatch_discards(backend: Backend) -> None:
    wrong = Digest.sha256_of(b"something else")
    async with backend.writer() as writer:
        await writer.write(b"data")
        with pytest.raises(DigestMismatch):
            await writer.commit(wrong)
    assert await backend.stat(Digest.sha256_of(b"data")) is None
    assert await backend.stat(wrong) is None


async def test_same_bytes_twice_keep_one_copy(backend: Backend, tmp_path: Path) -> None:
    digests = []
    for _ in range(2):
        async with backend.writer() as writer:
            await writer.write(b"same")
            digests.append(await writer.commit())
    assert digests[0] == digests[1]
    files = [p for p in (tmp_path / "storage" / "blobs").rglob("*") if p.is_file()]
    assert len(files) == 1


async def test_open_unknown_blob(backend: Backend) -> None:
    with pytest.raises(BlobUnknown):
        await backend.open(Digest.sha256_of(b"absent"))
    assert await backend.stat(Digest.sha256_of(b"absent")) is None


async def test_delete(backend: Backend) -> None:
    async with backend.writer() as writer:
        await writer.write(b"gone soon")
        digest = await writer.commit()
    assert await backend.delete(digest) is True
    assert await backend.delete(digest) is False
    assert await backend.stat(digest) is None


async def test_content_address_layout(tmp_path: Path) -> None:
    store = FilesystemBackend(tmp_path)
    await store.start()
    async with store.writer() as writer:
        await writer.write(b"layout")
        await writer.commit()
    hex_digest = hashlib.sha256(b"layout").hexdigest()
    assert (tmp_path / "blobs" / "sha256" / hex_digest[:2] / hex_digest).read_bytes() == b"layout"


async def test_stale_uploads_are_removed_fresh_ones_kept(tmp_path: Path) -> None:
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


async def test_cancel_waits_for_a_write_still_running(backend: Backend) -> None:
    """A cancelled request's write thread keeps going; its descriptor must outlive it."""
    data = b"w" * (32 * 1024 * 1024)
    async with backend.writer() as writer:
        write = asyncio.create_task(writer.write(data))
        await asyncio.sleep(0)  # the thread has started
        write.cancel()
        await asyncio.gather(write, return_exceptions=True)
        await writer.cancel()  # waits for the thread, then removes the temp file
    assert await backend.stat(Digest.sha256_of(data)) is None


async def test_a_cancelled_commit_either_stores_the_blob_or_nothing(backend: Backend) -> None:
    data = b"c" * (8 * 1024 * 1024)
    async with backend.writer() as writer:
        await writer.write(data)
        commit = asyncio.create_task(writer.commit())
        await asyncio.sleep(0)
        commit.cancel()
        await asyncio.gather(commit, return_exceptions=True)
    # The fixture checks that no temp file is left; the blob is whole or absent.
    size = await backend.stat(Digest.sha256_of(data))
    assert size in (None, len(data))
