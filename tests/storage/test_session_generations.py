"""Session file generations, dedup that never keeps a damaged copy, and the store's modes."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registryd.digest import Digest
from registryd.errors import UploadUnknown
from registryd.storage import paths
from registryd.storage.filesystem import FilesystemBackend

KEY = "c" * 32


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FilesystemBackend]:
    backend = FilesystemBackend(tmp_path / "storage")
    await backend.start()
    yield backend
    await backend.close()


def _digest(data: bytes) -> Digest:
    return Digest.sha256_of(data)


async def _append(
    store: FilesystemBackend, generation: str | None, offset: int, data: bytes
) -> None:
    async with await store.append_upload(KEY, generation, offset, None) as appender:
        await appender.write(data)
        await appender.finish()


async def test_fork_copies_only_the_recorded_bytes_into_a_new_file(
    store: FilesystemBackend,
) -> None:
    await store.create_upload(KEY)
    await _append(store, None, 0, b"recorded")
    old = paths.upload_session_path(store.root, KEY)
    # A request that lost its claim holds the old file and writes past the recorded size.
    holder = os.open(old, os.O_WRONLY)
    try:
        generation = paths.new_generation()
        await store.fork_upload(KEY, None, generation, len(b"recorded"))
        os.pwrite(holder, b"LATE WRITE", len(b"recorded"))
    finally:
        os.close(holder)
    assert not old.exists()
    new = paths.upload_session_path(store.root, KEY, generation)
    assert new.read_bytes() == b"recorded"
    assert stat.S_IMODE(new.stat().st_mode) == 0o600
    await _append(store, generation, len(b"recorded"), b" and more")
    data = b"recorded and more"
    await store.commit_upload(KEY, generation, len(data), _digest(data), None)
    assert paths.blob_path(store.root, _digest(data)).read_bytes() == data
    with pytest.raises(UploadUnknown):
        await store.fork_upload(KEY, None, paths.new_generation(), 0)


@pytest.mark.parametrize("damage", [b"the real bytes plus more", b"the REAL bytes"])
async def test_dedup_never_keeps_a_damaged_copy(store: FilesystemBackend, damage: bytes) -> None:
    data = b"the real bytes"
    target = paths.blob_path(store.root, _digest(data))
    target.parent.mkdir(parents=True)
    target.write_bytes(damage)
    async with store.writer() as writer:
        await writer.write(data)
        await writer.commit()
    assert target.read_bytes() == data
    assert list(paths.uploads_dir(store.root).iterdir()) == []


async def test_temp_files_are_named_by_their_owner(store: FilesystemBackend) -> None:
    store.owner = 0x1234ABCD
    async with store.writer() as writer:
        await writer.write(b"pending")
        [temp] = await store.temp_files()
        assert temp.owner == 0x1234ABCD
        assert temp.upload_key is None
    await store.create_upload(KEY)
    [session] = await store.temp_files()
    assert (session.upload_key, session.generation, session.owner) == (KEY, None, None)
    assert await store.remove_temp_files([session.name]) == 1
    with pytest.raises(ValueError, match="not a temp file"):
        await store.remove_temp_files(["../blobs"])
