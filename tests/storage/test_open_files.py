"""Shared blob descriptors: one per blob, closed only when evicted and no reader holds it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import pytest

from registryd.digest import Digest
from registryd.errors import BlobUnknown
from registryd.storage import paths
from registryd.storage.filesystem import FilesystemBackend
from registryd.storage.open_files import OpenFiles


def _file(tmp_path: Path, name: str, data: bytes = b"layer") -> BinaryIO:
    path = tmp_path / name
    path.write_bytes(data)
    return path.open("rb", buffering=0)


def _closed(file: BinaryIO) -> bool:
    return file.closed  # a call, so that the checker does not narrow between asserts


async def test_readers_of_one_blob_share_one_descriptor(tmp_path: Path) -> None:
    cache = OpenFiles(4)
    first = cache.add("a", _file(tmp_path, "a"), 5)
    second = cache.get("a")
    assert second is not None
    assert second.fileno() == first.fileno()
    assert os.pread(second.fileno(), 5, 0) == b"layer"
    await first.close()
    await first.close()  # idempotent: releases once
    assert os.pread(second.fileno(), 5, 0) == b"layer"
    await second.close()
    assert len(cache) == 1
    cache.clear()


async def test_evicted_descriptor_stays_open_until_its_last_reader_closes(tmp_path: Path) -> None:
    cache = OpenFiles(1)
    file = _file(tmp_path, "a")
    held = cache.add("a", file, 5)
    await cache.add("b", _file(tmp_path, "b"), 5).close()  # evicts "a" while it is read
    assert cache.get("a") is None
    assert not _closed(file)  # still open for its reader
    await held.close()
    assert _closed(file)
    cache.clear()


async def test_idle_evicted_descriptor_is_closed_at_once(tmp_path: Path) -> None:
    cache = OpenFiles(1)
    file = _file(tmp_path, "a")
    await cache.add("a", file, 5).close()
    assert not _closed(file)
    await cache.add("b", _file(tmp_path, "b"), 5).close()
    assert _closed(file)
    cache.clear()


async def test_a_second_open_of_a_cached_blob_is_closed_not_leaked(tmp_path: Path) -> None:
    cache = OpenFiles(4)
    kept = cache.add("a", _file(tmp_path, "a"), 5)
    duplicate = _file(tmp_path, "a2")
    again = cache.add("a", duplicate, 5)
    assert duplicate.closed
    assert again.fileno() == kept.fileno()
    cache.clear()
    assert os.pread(kept.fileno(), 5, 0) == b"layer"  # cleared, but two readers hold it
    await kept.close()
    await again.close()


async def test_expired_entries_are_reopened(tmp_path: Path) -> None:
    cache = OpenFiles(4, ttl_seconds=0)
    file = _file(tmp_path, "a")
    blob = cache.add("a", file, 5)
    assert cache.get("a") is None
    assert not _closed(file)  # the reader that had it keeps it
    await blob.close()
    assert _closed(file)
    assert len(cache) == 0


async def test_capacity_zero_shares_nothing(tmp_path: Path) -> None:
    cache = OpenFiles(0)
    file = _file(tmp_path, "a")
    blob = cache.add("a", file, 5)
    assert cache.get("a") is None
    await blob.close()
    assert _closed(file)


async def _store_with(tmp_path: Path, data: bytes) -> tuple[FilesystemBackend, Digest]:
    store = FilesystemBackend(tmp_path)
    await store.start()
    async with store.writer() as writer:
        await writer.write(data)
        return store, await writer.commit()


async def test_backend_opens_a_popular_blob_once(tmp_path: Path) -> None:
    store, digest = await _store_with(tmp_path, b"popular")
    blobs = [await store.open(digest) for _ in range(3)]
    assert len({blob.fileno() for blob in blobs}) == 1
    assert all(os.pread(b.fileno(), b.size_bytes, 0) == b"popular" for b in blobs)
    for blob in blobs:
        await blob.close()
    await store.close()


async def test_deleted_blob_is_not_served_from_the_cache(tmp_path: Path) -> None:
    store, digest = await _store_with(tmp_path, b"short-lived")
    await (await store.open(digest)).close()
    assert await store.delete(digest)
    with pytest.raises(BlobUnknown):
        await store.open(digest)


async def test_blob_removed_behind_our_back_is_not_served(tmp_path: Path) -> None:
    store, digest = await _store_with(tmp_path, b"removed by an operator")
    await (await store.open(digest)).close()
    paths.blob_path(tmp_path, digest).unlink()
    with pytest.raises(BlobUnknown):
        await store.open(digest)


async def test_sweep_closes_idle_descriptors_of_removed_files(tmp_path: Path) -> None:
    cache = OpenFiles(4)
    kept, removed = _file(tmp_path, "kept"), _file(tmp_path, "removed")
    await cache.add("kept", kept, 5).close()
    await cache.add("removed", removed, 5).close()
    (tmp_path / "removed").unlink()
    assert cache.sweep() == 1
    assert _closed(removed)  # its disk space is free now
    assert not _closed(kept)
    assert len(cache) == 1
    cache.clear()


async def test_sweep_drops_expired_entries(tmp_path: Path) -> None:
    cache = OpenFiles(4, ttl_seconds=0)
    file = _file(tmp_path, "a")
    await cache.add("a", file, 5).close()
    assert cache.sweep() == 1
    assert _closed(file)
