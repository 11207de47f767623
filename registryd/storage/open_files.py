"""Descriptors of recently served blobs, shared by concurrent readers.

Opening a blob costs an executor round trip: about 250 µs of a small layer
GET's ~600 µs on a busy loop. Blobs are immutable and readers only use
positional reads (``sendfile`` and ``pread`` with an offset), so one
descriptor can serve every concurrent GET of a blob, as nginx's
``open_file_cache`` does.

Only a blob the database has already vouched for is looked up here. A hit
checks that the file still has a name (``fstat`` on the open descriptor, no
path lookup), so a blob removed or replaced behind our back is opened afresh,
and answered 404 when gone, at once, as without the cache. ``sweep``, run
every few seconds, closes idle descriptors of removed files, so deleting a
blob frees its space even if nobody asks for it again.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import BinaryIO

from registryd.lru import Lru

# An entry is re-opened after this long, whatever fstat says (a filesystem may
# report a stale link count).
TTL_SECONDS = 10.0
# Bytes read at a time by read_range.
READ_CHUNK_BYTES = 1024 * 1024


class _Entry:
    __slots__ = ("evicted", "expires_at", "file", "readers", "size_bytes")

    def __init__(self, file: BinaryIO, size_bytes: int, expires_at: float) -> None:
        self.file = file
        self.size_bytes = size_bytes
        self.expires_at = expires_at
        self.readers = 0
        self.evicted = False


class SharedBlob:
    """One reader's hold on a shared descriptor (an ``OpenBlob``); ``close`` releases it."""

    __slots__ = ("_entry", "_released")

    def __init__(self, entry: _Entry) -> None:
        self._entry = entry
        self._released = False
        entry.readers += 1

    @property
    def size_bytes(self) -> int:
        return self._entry.size_bytes

    def fileno(self) -> int:
        return self._entry.file.fileno()

    async def read_range(self, offset: int, count: int) -> AsyncIterator[bytes]:
        """Positional reads off the loop, READ_CHUNK_BYTES at a time."""
        loop = asyncio.get_running_loop()
        fd = self.fileno()
        end = offset + count
        while offset < end:
            data = await loop.run_in_executor(
                None, os.pread, fd, min(READ_CHUNK_BYTES, end - offset), offset
            )
            if not data:
                raise OSError(f"blob shrank while being read (at byte {offset})")
            yield data
            offset += len(data)

    async def close(self) -> None:
        if not self._released:
            self._released = True
            self._entry.readers -= 1
            _close_if_unused(self._entry)


def _unlinked(entry: _Entry) -> bool:
    try:
        return os.fstat(entry.file.fileno()).st_nlink == 0
    except OSError:
        return True


def _evict(entry: _Entry) -> None:
    """Out of the cache: its descriptor closes with its last reader."""
    entry.evicted = True
    _close_if_unused(entry)


def _close_if_unused(entry: _Entry) -> None:
    # Closing a read-only descriptor does not block on local filesystems.
    if entry.evicted and entry.readers == 0:
        entry.file.close()


class OpenFiles:
    """At most ``capacity`` open blob files, least recently used evicted first.

    Every method runs on the event loop and never blocks. A capacity of 0
    disables sharing: each ``add`` hands out a descriptor closed by its reader.
    """

    def __init__(self, capacity: int, ttl_seconds: float = TTL_SECONDS) -> None:
        self.capacity = capacity
        self.ttl_seconds = ttl_seconds
        self._entries: Lru[str, _Entry] = Lru(capacity, on_evict=_evict)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> SharedBlob | None:
        entry = self._entries.peek(key)
        if entry is None:
            return None
        if time.monotonic() >= entry.expires_at or _unlinked(entry):
            self.discard(key)
            return None
        self._entries.get(key)  # now the most recently used
        return SharedBlob(entry)

    def add(self, key: str, file: BinaryIO, size_bytes: int) -> SharedBlob:
        """Share a freshly opened ``file``; the cache owns it from now on."""
        if (current := self.get(key)) is not None:
            file.close()  # another reader opened it meanwhile: keep one descriptor
            return current
        entry = _Entry(file, size_bytes, time.monotonic() + self.ttl_seconds)
        blob = SharedBlob(entry)
        if self.capacity <= 0:
            entry.evicted = True  # never shared: closed when its only reader closes
            return blob
        self._entries.put(key, entry)
        return blob

    def sweep(self) -> int:
        """Drop expired entries and those whose file was removed; return how many."""
        now = time.monotonic()
        stale = [k for k, e in self._entries.snapshot() if now >= e.expires_at or _unlinked(e)]
        for key in stale:
            self.discard(key)
        return len(stale)

    def discard(self, key: str) -> None:
        """Forget ``key`` (deleted, expired); its descriptor closes with its last reader."""
        entry = self._entries.pop(key)
        if entry is not None:
            _evict(entry)

    def clear(self) -> None:
        for key, _ in self._entries.snapshot():
            self.discard(key)
