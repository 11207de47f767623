"""A committed blob's pages leave the page cache unless ``drop_written_pages`` is off.

Residency is read with mincore(2) on a mapping of the blob file: the kernel's own
answer, not a mock of posix_fadvise.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from pathlib import Path

import pytest

from registryd.digest import Digest
from registryd.storage import paths
from registryd.storage.filesystem import FilesystemBackend

SIZE = 4 * 1024 * 1024
KEY = paths.new_upload_key()

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def _resident_fraction(path: Path) -> float:
    """The share of the file's pages in the page cache (mapping it faults none in)."""
    size = path.stat().st_size
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        address = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap")
        try:
            vector = (ctypes.c_ubyte * pages)()
            if _libc.mincore(address, size, vector) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            _libc.munmap(address, size)
    finally:
        os.close(fd)
    return sum(byte & 1 for byte in vector) / pages


@pytest.mark.parametrize("drop", [True, False])
async def test_pushed_blob_pages_follow_the_setting(tmp_path: Path, drop: bool) -> None:
    store = FilesystemBackend(tmp_path, drop_pages=drop)
    await store.start()
    data = os.urandom(SIZE)
    async with store.writer() as writer:
        await writer.write(data)
        digest = await writer.commit()
    resident = _resident_fraction(paths.blob_path(store.root, digest))
    assert (resident < 0.1) if drop else (resident > 0.9), resident
    await store.close()


@pytest.mark.parametrize("drop", [True, False])
async def test_uploaded_session_pages_follow_the_setting(tmp_path: Path, drop: bool) -> None:
    store = FilesystemBackend(tmp_path, drop_pages=drop)
    await store.start()
    data = os.urandom(SIZE)
    await store.create_upload(KEY)
    for offset in (0, SIZE // 2):
        async with await store.append_upload(KEY, None, offset, None) as appender:
            await appender.write(data[offset : offset + SIZE // 2])
            await appender.finish()
    digest = Digest.sha256_of(data)
    await store.commit_upload(KEY, None, SIZE, digest, None)
    resident = _resident_fraction(paths.blob_path(store.root, digest))
    assert (resident < 0.1) if drop else (resident > 0.9), resident
    assert (
        paths.blob_path(store.root, digest).read_bytes() == data
    )  # dropped pages read back from disk
    await store.close()
