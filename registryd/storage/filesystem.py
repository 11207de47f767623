"""Filesystem backend: blobs as files under one root (layout in ``paths.py``).

Every blocking call runs in the loop's default executor. Hashing happens in the
same executor hop as the write, in whatever size the caller hands over; a
writer's second digest (``tee``) runs beside it on another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

import aiofiles.os

from registryd.digest import Digest, Hasher, Sha256
from registryd.errors import BlobUnknown, DigestInvalid, DigestMismatch, UploadUnknown
from registryd.storage import paths
from registryd.storage.open_files import OpenFiles, SharedBlob


async def _listdir(path: Path) -> list[str]:
    """Entry names of a directory; none when it is gone or is not a directory."""
    try:
        return sorted(await aiofiles.os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_REHASH_CHUNK_BYTES = 1024 * 1024


def _store_at_content_address(root: Path, source: Path, digest: Digest) -> None:
    """Rename a complete, fsynced temp file to the blob's path (or drop it if stored)."""
    target = paths.blob_path(root, digest)
    if target.exists():
        # Same digest, same bytes: keep the stored copy (dedup).
        source.unlink()
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    source.replace(target)
    _fsync_dir(target.parent)


async def _finished(work: asyncio.Future[Any] | None) -> None:
    """Wait until executor work on a descriptor is over, however it ends.

    A thread cannot be interrupted: closing its descriptor early lets the kernel
    reuse the number for another file, which the thread would then write into.
    """
    if work is not None and not work.done():
        await asyncio.wait([work])


class FilesystemWriter:
    """A temp file under ``uploads/`` that becomes ``blobs/…`` on commit."""

    def __init__(self, root: Path, tee: Sha256 | None) -> None:
        self._root = root
        self._tee = tee
        self._hash = Sha256()
        self._path = paths.new_upload_path(root)
        self._fd: int | None = None
        self._size_bytes = 0
        # Set once commit or cancel has taken charge of the bytes.
        self._done = False
        # Executor work on our descriptor, which must not be closed before it ends.
        self._busy: asyncio.Future[Any] | None = None

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    def digest(self) -> Digest:
        return self._hash.digest()

    def _open_sync(self) -> None:
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def _write_sync(self, data: bytes | memoryview) -> None:
        if self._fd is None:
            self._open_sync()
        assert self._fd is not None
        self._hash.update(data)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    async def write(self, data: bytes | memoryview) -> None:
        if self._done:
            raise RuntimeError("write after commit or cancel")
        if not data:
            return
        loop = asyncio.get_running_loop()
        work: asyncio.Future[Any] = loop.run_in_executor(None, self._write_sync, data)
        if self._tee is not None:
            # A second digest over the same bytes (v1's payload checksum) on a
            # second thread: hashlib releases the GIL, so with two cores both
            # hashes run at once, still over one buffer that is read, not copied.
            work = asyncio.gather(work, loop.run_in_executor(None, self._tee.update, data))
        self._busy = work
        await asyncio.shield(work)
        self._size_bytes += len(data)

    def _commit_sync(self, expected: Digest | None) -> Digest:
        if self._fd is None:
            self._open_sync()
        assert self._fd is not None
        digest = self._hash.digest()
        if expected is not None and expected != digest:
            raise DigestMismatch(str(expected), str(digest))
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        _store_at_content_address(self._root, self._path, digest)
        return digest

    async def commit(self, expected: Digest | None = None) -> Digest:
        if self._done:
            raise RuntimeError("commit after commit or cancel")
        await _finished(self._busy)
        self._done = True  # from here on the bytes are this method's to keep or discard
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(None, self._commit_sync, expected)
        self._busy = work
        try:
            # Shielded: a cancelled caller must not split fsync and rename.
            return await asyncio.shield(work)
        except BaseException:
            await _finished(self._busy)
            if work.done() and not work.cancelled() and work.exception() is None:
                raise  # stored after all; only the caller was cancelled
            await asyncio.shield(loop.run_in_executor(None, self._cancel_sync))
            raise

    def _cancel_sync(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    async def cancel(self) -> None:
        """Discard the pending bytes, unless commit has already taken charge of them."""
        if self._done:
            return
        self._done = True
        await _finished(self._busy)
        await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, self._cancel_sync))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.cancel()


class FilesystemAppender:
    """Appends one request's bytes to ``uploads/<key>.part`` at a known offset."""

    def __init__(self, path: Path, fd: int, offset: int, hasher: Hasher | None) -> None:
        self._path = path
        self._fd: int | None = fd
        self._start = offset
        self._size_bytes = offset
        self._hasher = hasher
        # The write thread in flight, which the descriptor must outlive.
        self._busy: asyncio.Future[None] | None = None

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    def _write_sync(self, data: bytes | memoryview) -> None:
        assert self._fd is not None
        if self._hasher is not None:
            self._hasher.update(data)
        view = memoryview(data)
        offset = self._size_bytes
        while view:
            written = os.pwrite(self._fd, view, offset)
            view = view[written:]
            offset += written

    async def write(self, data: bytes | memoryview) -> None:
        if self._fd is None:
            raise RuntimeError("write after finish")
        if not data:
            return
        self._busy = asyncio.get_running_loop().run_in_executor(None, self._write_sync, data)
        await asyncio.shield(self._busy)
        self._size_bytes += len(data)

    def _finish_sync(self) -> None:
        assert self._fd is not None
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None

    async def finish(self) -> int:
        if self._fd is None:
            raise RuntimeError("finish after finish")
        await _finished(self._busy)
        await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, self._finish_sync))
        return self._size_bytes

    def _abort_sync(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, self._start)
        finally:
            os.close(self._fd)
            self._fd = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            await _finished(self._busy)
            await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, self._abort_sync))


class FilesystemBackend:
    """``open_files``: blob descriptors kept open and shared by readers (0: none)."""

    def __init__(self, root: Path, open_files: int = 256) -> None:
        self.root = root
        self._open_files = OpenFiles(open_files)

    def _start_sync(self) -> None:
        paths.blobs_dir(self.root).mkdir(parents=True, exist_ok=True)
        paths.uploads_dir(self.root).mkdir(parents=True, exist_ok=True)

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._start_sync)

    def writer(self, *, tee: Sha256 | None = None) -> FilesystemWriter:
        return FilesystemWriter(self.root, tee)

    def _open_sync(self, digest: Digest) -> tuple[BinaryIO, int]:
        try:
            file = paths.blob_path(self.root, digest).open("rb", buffering=0)
        except FileNotFoundError:
            raise BlobUnknown(str(digest)) from None
        try:
            size = os.fstat(file.fileno()).st_size
        except BaseException:
            file.close()
            raise
        return file, size

    async def open(self, digest: Digest) -> SharedBlob:
        key = str(digest)
        if (shared := self._open_files.get(key)) is not None:
            return shared  # no executor hop: the common case of a popular layer
        file, size = await asyncio.get_running_loop().run_in_executor(None, self._open_sync, digest)
        return self._open_files.add(key, file, size)

    def sweep_open_files(self) -> int:
        """Close shared descriptors that expired or whose file was removed."""
        return self._open_files.sweep()

    def close(self) -> None:
        """Close the shared descriptors (each when its last reader is done)."""
        self._open_files.clear()

    def _stat_sync(self, digest: Digest) -> int | None:
        try:
            return paths.blob_path(self.root, digest).stat().st_size
        except FileNotFoundError:
            return None

    async def stat(self, digest: Digest) -> int | None:
        return await asyncio.get_running_loop().run_in_executor(None, self._stat_sync, digest)

    async def delete(self, digest: Digest) -> bool:
        self._open_files.discard(str(digest))
        try:
            await aiofiles.os.remove(paths.blob_path(self.root, digest))
        except FileNotFoundError:
            return False
        return True

    async def list_blobs(self) -> AsyncIterator[Digest]:
        """Walk ``blobs/<algorithm>/<xx>/<hex>``; names that are no digest are skipped."""
        root = paths.blobs_dir(self.root)
        for algorithm in await _listdir(root):
            for prefix in await _listdir(root / algorithm):
                for name in await _listdir(root / algorithm / prefix):
                    try:
                        digest = Digest.parse(f"{algorithm}:{name}")
                    except DigestInvalid:
                        continue
                    if digest.hex[:2] == prefix:
                        yield digest

    def _create_upload_sync(self) -> str:
        key = paths.new_upload_key()
        fd = os.open(
            paths.upload_session_path(self.root, key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644
        )
        os.close(fd)
        return key

    async def create_upload(self) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self._create_upload_sync)

    def _appender(
        self, path: Path, fd: int, offset: int, hasher: Hasher | None
    ) -> FilesystemAppender:
        """The appender for an opened session file (a subclass may count its work)."""
        return FilesystemAppender(path, fd, offset, hasher)

    def _append_upload_sync(
        self, upload_key: str, offset: int, hasher: Hasher | None
    ) -> FilesystemAppender:
        path = paths.upload_session_path(self.root, upload_key)
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            raise UploadUnknown() from None
        try:
            size = os.fstat(fd).st_size
            if size < offset:
                raise UploadUnknown()  # the recorded bytes are gone: the session is lost
            if size > offset:
                os.ftruncate(fd, offset)  # left by a request that died mid-chunk
            # Touch it: the stale sweeper judges sessions by their file's mtime.
            os.utime(fd)
        except BaseException:
            os.close(fd)
            raise
        return self._appender(path, fd, offset, hasher)

    async def append_upload(
        self, upload_key: str, offset: int, hasher: Hasher | None
    ) -> FilesystemAppender:
        return await asyncio.get_running_loop().run_in_executor(
            None, self._append_upload_sync, upload_key, offset, hasher
        )

    def _commit_upload_sync(
        self, upload_key: str, size_bytes: int, expected: Digest, hasher: Hasher | None
    ) -> None:
        path = paths.upload_session_path(self.root, upload_key)
        try:
            file = path.open("r+b", buffering=0)
        except FileNotFoundError:
            raise UploadUnknown() from None
        with file:
            if os.fstat(file.fileno()).st_size < size_bytes:
                raise UploadUnknown()
            file.truncate(size_bytes)
            if hasher is None or hasher.algorithm != expected.algorithm:
                hasher = Hasher(expected.algorithm)
                while chunk := file.read(_REHASH_CHUNK_BYTES):
                    hasher.update(chunk)
            actual = hasher.digest()
            if actual != expected:
                raise DigestMismatch(str(expected), str(actual))
            os.fsync(file.fileno())
        _store_at_content_address(self.root, path, expected)

    async def commit_upload(
        self, upload_key: str, size_bytes: int, expected: Digest, hasher: Hasher | None
    ) -> None:
        # Shielded: a cancelled caller must not split fsync and rename.
        await asyncio.shield(
            asyncio.get_running_loop().run_in_executor(
                None, self._commit_upload_sync, upload_key, size_bytes, expected, hasher
            )
        )

    def _delete_upload_sync(self, upload_key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            paths.upload_session_path(self.root, upload_key).unlink()

    async def delete_upload(self, upload_key: str) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._delete_upload_sync, upload_key)

    def _remove_stale_uploads_sync(self, max_age_seconds: float) -> int:
        cutoff = time.time() - max_age_seconds
        removed = 0
        for entry in os.scandir(paths.uploads_dir(self.root)):
            if not entry.name.endswith(paths.UPLOAD_SUFFIX):
                continue
            try:
                if entry.stat().st_mtime <= cutoff:
                    Path(entry.path).unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # finished or cancelled while we looked
        return removed

    async def remove_stale_uploads(self, max_age_seconds: float) -> int:
        return await asyncio.get_running_loop().run_in_executor(
            None, self._remove_stale_uploads_sync, max_age_seconds
        )
