"""Filesystem backend: blobs as files under one root (layout in ``paths.py``).

Every blocking call runs in the loop's default executor. Hashing happens in the
same executor hop as the write, in whatever size the caller hands over; a
writer's second digest (``tee``) runs beside it on another thread. A full disk
(ENOSPC, EDQUOT) is the domain's StorageFull, not an internal error.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, ParamSpec, Self, TypeVar

import aiofiles.os

from registryd.digest import Digest, Hasher, Sha256
from registryd.errors import (
    BlobUnknown,
    DigestInvalid,
    StorageFull,
    UploadUnknown,
)
from registryd.storage import hashing, paths
from registryd.storage.base import TempFile
from registryd.storage.open_files import OpenFiles, SharedBlob

_P = ParamSpec("_P")
_T = TypeVar("_T")
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def _no_space(function: Callable[_P, _T]) -> Callable[_P, _T]:
    """Turn "no space left" into StorageFull: the client may retry, nothing is wrong with it."""

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return function(*args, **kwargs)
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise StorageFull(str(exc)) from exc
            raise

    return wrapper


def _mkdirs(path: Path) -> None:
    """``mkdir -p`` with every directory it creates 0700 (``Path.mkdir`` gives parents 0777)."""
    if path.is_dir():
        return
    _mkdirs(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=paths.DIR_MODE)


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


def _drop_pages(fd: int, drop: bool) -> None:
    """Hand a written, fsynced file's pages back to the kernel.

    A push streams bytes that are rarely read again soon by this process, and
    keeping them evicts the pulls' hot set. Reusing freed pages is also far
    cheaper than faulting in new ones: on a VM, writing 1 GB into fresh page
    cache cost 3.5-4 CPU s against 0.35 s when each file's pages were dropped
    after its fsync (bench/README.md). Clean pages only: call after fsync.
    """
    if drop:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _store_at_content_address(root: Path, source: Path, digest: Digest) -> None:
    """Rename a complete, fsynced, verified temp file to the blob's path.

    Only the request holding ``source`` has a descriptor of it, and that one is
    closed: once at its content address no descriptor can write to the file.
    Bytes already stored are replaced, not kept (still one copy): the new file
    was just verified, while a stored one may have been damaged since (on disk,
    or by an older version), and the rename costs no more than an unlink.
    Readers of the old file keep reading it, the same bytes.
    """
    target = paths.blob_path(root, digest)
    _mkdirs(target.parent)
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

    def __init__(
        self, root: Path, tee: Sha256 | None, owner: int = 0, *, drop_pages: bool = True
    ) -> None:
        self._root = root
        self._drop_pages = drop_pages
        self._tee = tee
        self._hash = Sha256()
        self._path = paths.new_upload_path(root, owner)
        self._fd: int | None = None
        self._size_bytes = 0
        # Set once commit or cancel has taken charge of the bytes.
        self._done = False
        # Executor work on our descriptor, which must not be closed before it ends.
        self._busy: asyncio.Future[Any] | None = None

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    @property
    def temp_path(self) -> Path:
        """Where the bytes land until commit (created by the first write); readers that
        follow a download in flight (the mirror) open it by this name."""
        return self._path

    def digest(self) -> Digest:
        return self._hash.digest()

    def _open_sync(self) -> None:
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, paths.FILE_MODE)

    @_no_space
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

    @_no_space
    def _seal_sync(self, expected: Digest | None) -> Digest:
        if self._fd is None:
            self._open_sync()
        assert self._fd is not None
        digest = hashing.verify(self._hash.digest(), expected)
        os.fsync(self._fd)
        _drop_pages(self._fd, self._drop_pages)
        os.close(self._fd)
        self._fd = None
        return digest

    @_no_space
    def _store_sync(self, digest: Digest) -> None:
        _store_at_content_address(self._root, self._path, digest)

    async def _commit_steps(
        self, expected: Digest | None, before_store: Callable[[Digest], Awaitable[None]] | None
    ) -> Digest:
        loop = asyncio.get_running_loop()
        try:
            digest = await loop.run_in_executor(None, self._seal_sync, expected)
            if before_store is not None:
                await before_store(digest)
            await loop.run_in_executor(None, self._store_sync, digest)
        except BaseException:
            await loop.run_in_executor(None, self._cancel_sync)
            raise
        return digest

    async def commit(
        self,
        expected: Digest | None = None,
        *,
        before_store: Callable[[Digest], Awaitable[None]] | None = None,
    ) -> Digest:
        if self._done:
            raise RuntimeError("commit after commit or cancel")
        await _finished(self._busy)
        self._done = True  # from here on the bytes are this method's to keep or discard
        # One task, shielded: a cancelled caller must not split fsync, ``before_store``
        # and rename; it waits for them and is then told it was cancelled.
        steps = asyncio.ensure_future(self._commit_steps(expected, before_store))
        self._busy = steps
        try:
            return await asyncio.shield(steps)
        except asyncio.CancelledError:
            await _finished(steps)
            if not steps.cancelled():
                steps.exception()  # retrieved: the cancellation is what the caller sees
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

    def __init__(
        self, path: Path, fd: int, offset: int, hasher: Hasher | None, *, drop_pages: bool = True
    ) -> None:
        self._path = path
        self._drop_pages = drop_pages
        self._fd: int | None = fd
        self._start = offset
        self._size_bytes = offset
        self._hasher = hasher
        # The write thread in flight, which the descriptor must outlive.
        self._busy: asyncio.Future[None] | None = None

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    @_no_space
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

    @_no_space
    def _finish_sync(self) -> None:
        assert self._fd is not None
        os.fsync(self._fd)
        _drop_pages(self._fd, self._drop_pages)
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
    """``open_files``: blob descriptors kept open and shared by readers (0: none).

    ``owner`` is the key of this process (registryd.db.process_owner), put in the
    names of its temp files so that files of a dead process can be told apart.
    """

    follows_writes = True

    def __init__(self, root: Path, open_files: int = 256, *, drop_pages: bool = True) -> None:
        self.root = root
        self.owner = 0
        self.drop_pages = drop_pages
        self._open_files = OpenFiles(open_files)

    @_no_space
    def _start_sync(self) -> None:
        for directory in (paths.blobs_dir(self.root), paths.uploads_dir(self.root)):
            _mkdirs(directory)
        # Stores made by older versions were world-readable: close the top, which
        # closes everything below it.
        for directory in (self.root, paths.blobs_dir(self.root), paths.uploads_dir(self.root)):
            if directory.stat().st_mode & 0o077:
                directory.chmod(paths.DIR_MODE)

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._start_sync)

    def writer(self, *, tee: Sha256 | None = None) -> FilesystemWriter:
        return FilesystemWriter(self.root, tee, self.owner, drop_pages=self.drop_pages)

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

    async def open(self, digest: Digest, size_bytes: int | None = None) -> SharedBlob:
        # The size comes from fstat, which costs nothing here: ``size_bytes`` is unused.
        key = str(digest)
        if (shared := self._open_files.get(key)) is not None:
            return shared  # no executor hop: the common case of a popular layer
        file, size = await asyncio.get_running_loop().run_in_executor(None, self._open_sync, digest)
        return self._open_files.add(key, file, size)

    def sweep_open_files(self) -> int:
        """Close shared descriptors that expired or whose file was removed."""
        return self._open_files.sweep()

    async def close(self) -> None:
        """Close the shared descriptors (each when its last reader is done)."""
        self._open_files.clear()

    def _check_sync(self, min_free_bytes: int) -> str | None:
        # Uploads are written in one and renamed into the other on commit.
        for directory in (paths.uploads_dir(self.root), paths.blobs_dir(self.root)):
            if not directory.is_dir():
                return f"{directory} is not a directory"
            # access(2) also answers EROFS for a read-only mount, without writing anything.
            if not os.access(directory, os.W_OK | os.X_OK):
                return f"{directory} is not writable"
        if min_free_bytes:
            stats = os.statvfs(paths.uploads_dir(self.root))
            free = stats.f_bavail * stats.f_frsize
            if free < min_free_bytes:
                return f"storage has {free} bytes free, less than min_free_bytes ({min_free_bytes})"
        return None

    async def check(self, min_free_bytes: int) -> str | None:
        """Both directories writable and ``min_free_bytes`` free (runs off the loop)."""
        return await asyncio.get_running_loop().run_in_executor(
            None, self._check_sync, min_free_bytes
        )

    async def redirect_url(self, digest: Digest, expires_seconds: int) -> str | None:
        """None: the server sends the file itself (sendfile)."""
        return None

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

    @_no_space
    def _create_upload_sync(self, upload_key: str) -> None:
        path = paths.upload_session_path(self.root, upload_key)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, paths.FILE_MODE))

    async def create_upload(self, upload_key: str) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._create_upload_sync, upload_key)

    def _appender(
        self, path: Path, fd: int, offset: int, hasher: Hasher | None
    ) -> FilesystemAppender:
        """The appender for an opened session file (a subclass may count its work)."""
        return FilesystemAppender(path, fd, offset, hasher, drop_pages=self.drop_pages)

    def _append_upload_sync(
        self, upload_key: str, generation: str | None, offset: int, hasher: Hasher | None
    ) -> FilesystemAppender:
        path = paths.upload_session_path(self.root, upload_key, generation)
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
        self, upload_key: str, generation: str | None, offset: int, hasher: Hasher | None
    ) -> FilesystemAppender:
        return await asyncio.get_running_loop().run_in_executor(
            None, self._append_upload_sync, upload_key, generation, offset, hasher
        )

    @_no_space
    def _fork_upload_sync(
        self, upload_key: str, source: str | None, target: str, size_bytes: int
    ) -> None:
        old = paths.upload_session_path(self.root, upload_key, source)
        new = paths.upload_session_path(self.root, upload_key, target)
        temp = paths.new_upload_path(self.root, self.owner)
        try:
            src = old.open("rb", buffering=0)
        except FileNotFoundError:
            raise UploadUnknown() from None
        try:
            with src, temp.open("xb", buffering=0) as dst:
                os.fchmod(dst.fileno(), paths.FILE_MODE)
                if os.fstat(src.fileno()).st_size < size_bytes:
                    raise UploadUnknown()
                # Only the recorded bytes: the request that lost the claim may still
                # write past them, into the old file, which no one will commit.
                shutil.copyfileobj(_Prefix(src, size_bytes), dst, hashing.REHASH_CHUNK_BYTES)
                os.fsync(dst.fileno())
                _drop_pages(dst.fileno(), self.drop_pages)
            temp.replace(new)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        with contextlib.suppress(FileNotFoundError):
            old.unlink()

    async def fork_upload(
        self, upload_key: str, source: str | None, target: str, size_bytes: int
    ) -> None:
        """Copy the first ``size_bytes`` of generation ``source`` into a new file,
        generation ``target``, and remove the old one; raise UploadUnknown."""
        await asyncio.shield(
            asyncio.get_running_loop().run_in_executor(
                None, self._fork_upload_sync, upload_key, source, target, size_bytes
            )
        )

    @_no_space
    def _verify_upload_sync(
        self,
        upload_key: str,
        generation: str | None,
        size_bytes: int,
        expected: Digest,
        hasher: Hasher | None,
    ) -> Path:
        path = paths.upload_session_path(self.root, upload_key, generation)
        try:
            file = path.open("r+b", buffering=0)
        except FileNotFoundError:
            raise UploadUnknown() from None
        with file:
            if os.fstat(file.fileno()).st_size < size_bytes:
                raise UploadUnknown()
            file.truncate(size_bytes)
            if (hasher := hashing.reusable(hasher, expected)) is None:
                hasher = Hasher(expected.algorithm)
                while chunk := file.read(hashing.REHASH_CHUNK_BYTES):
                    hasher.update(chunk)
            hashing.verify(hasher.digest(), expected)
            os.fsync(file.fileno())
            _drop_pages(file.fileno(), self.drop_pages)
        return path

    async def _commit_upload_steps(
        self,
        upload_key: str,
        generation: str | None,
        size_bytes: int,
        expected: Digest,
        hasher: Hasher | None,
        before_store: Callable[[], Awaitable[None]] | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        path = await loop.run_in_executor(
            None, self._verify_upload_sync, upload_key, generation, size_bytes, expected, hasher
        )
        if before_store is not None:
            await before_store()
        await loop.run_in_executor(
            None, _no_space(_store_at_content_address), self.root, path, expected
        )

    async def commit_upload(
        self,
        upload_key: str,
        generation: str | None,
        size_bytes: int,
        expected: Digest,
        hasher: Hasher | None,
        *,
        before_store: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        # One task, shielded: a cancelled caller must not split fsync, ``before_store``
        # and rename.
        steps = asyncio.ensure_future(
            self._commit_upload_steps(
                upload_key, generation, size_bytes, expected, hasher, before_store
            )
        )
        try:
            await asyncio.shield(steps)
        except asyncio.CancelledError:
            await _finished(steps)
            if not steps.cancelled():
                steps.exception()  # retrieved: the cancellation is what the caller sees
            raise

    def _delete_upload_sync(self, upload_key: str, generation: str | None) -> None:
        with contextlib.suppress(FileNotFoundError):
            paths.upload_session_path(self.root, upload_key, generation).unlink()

    async def delete_upload(self, upload_key: str, generation: str | None) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, self._delete_upload_sync, upload_key, generation
        )

    def _temp_files_sync(self) -> list[TempFile]:
        found = []
        for entry in os.scandir(paths.uploads_dir(self.root)):
            if not entry.name.endswith(paths.UPLOAD_SUFFIX):
                continue
            try:
                mtime = entry.stat().st_mtime
            except FileNotFoundError:
                continue  # finished or cancelled while we looked
            session = paths.parse_session_file(entry.name)
            if session is not None:
                found.append(TempFile(entry.name, mtime, session[0], session[1]))
            else:
                found.append(TempFile(entry.name, mtime, owner=paths.parse_owned_file(entry.name)))
        return found

    async def temp_files(self) -> list[TempFile]:
        """Every temp file under ``uploads/``, for the sweeper to judge."""
        return await asyncio.get_running_loop().run_in_executor(None, self._temp_files_sync)

    def _remove_temp_files_sync(self, names: list[str]) -> int:
        removed = 0
        for name in names:
            if "/" in name or not name.endswith(paths.UPLOAD_SUFFIX):
                raise ValueError(f"not a temp file: {name!r}")
            with contextlib.suppress(FileNotFoundError):
                (paths.uploads_dir(self.root) / name).unlink()
                removed += 1
        return removed

    async def remove_temp_files(self, names: list[str]) -> int:
        """Remove temp files by name; return how many existed."""
        return await asyncio.get_running_loop().run_in_executor(
            None, self._remove_temp_files_sync, names
        )

    def _remove_stale_uploads_sync(self, max_age_seconds: float) -> int:
        cutoff = time.time() - max_age_seconds
        stale = [f.name for f in self._temp_files_sync() if f.mtime <= cutoff]
        return self._remove_temp_files_sync(stale)

    async def remove_stale_uploads(self, max_age_seconds: float) -> int:
        """Remove temp files untouched for ``max_age_seconds``; return how many."""
        return await asyncio.get_running_loop().run_in_executor(
            None, self._remove_stale_uploads_sync, max_age_seconds
        )


class _Prefix:
    """The first ``size`` bytes of a binary file, as a readable for ``copyfileobj``."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self._left = size

    def read(self, n: int = -1) -> bytes:
        want = self._left if n < 0 else min(n, self._left)
        data = self._file.read(want) if want else b""
        self._left -= len(data)
        return data
