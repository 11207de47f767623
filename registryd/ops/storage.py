"""The filesystem backend, counted: uploads in progress and storage errors by operation.

A subclass rather than a wrapper, so that every backend method added later
still works (uncounted until it is listed here).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

from registryd.digest import Digest, Hasher, Sha256
from registryd.errors import StorageFull
from registryd.ops.metrics import Metrics
from registryd.storage.filesystem import (
    FilesystemAppender,
    FilesystemBackend,
    FilesystemWriter,
)
from registryd.storage.open_files import SharedBlob


@contextlib.contextmanager
def _counting_errors(metrics: Metrics, operation: str) -> Iterator[None]:
    try:
        yield
    except (OSError, StorageFull):
        metrics.storage_errors.labels(operation).inc()
        raise


class ObservedWriter(FilesystemWriter):
    def __init__(self, root: Path, tee: Sha256 | None, owner: int, metrics: Metrics) -> None:
        super().__init__(root, tee, owner)
        self._metrics = metrics

    async def write(self, data: bytes | memoryview) -> None:
        with _counting_errors(self._metrics, "write"):
            await super().write(data)

    async def commit(
        self,
        expected: Digest | None = None,
        *,
        before_store: Callable[[Digest], Awaitable[None]] | None = None,
    ) -> Digest:
        with _counting_errors(self._metrics, "commit"):
            return await super().commit(expected, before_store=before_store)

    async def cancel(self) -> None:
        with _counting_errors(self._metrics, "cancel"):
            await super().cancel()

    async def __aenter__(self) -> Self:
        self._metrics.uploads_in_progress.inc()
        return await super().__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            self._metrics.uploads_in_progress.dec()


class ObservedAppender(FilesystemAppender):
    """One v2 chunk request's appender, counted."""

    def __init__(
        self, path: Path, fd: int, offset: int, hasher: Hasher | None, metrics: Metrics
    ) -> None:
        super().__init__(path, fd, offset, hasher)
        self._metrics = metrics

    async def write(self, data: bytes | memoryview) -> None:
        with _counting_errors(self._metrics, "write"):
            await super().write(data)

    async def finish(self) -> int:
        with _counting_errors(self._metrics, "commit"):
            return await super().finish()

    async def __aenter__(self) -> Self:
        self._metrics.uploads_in_progress.inc()
        return await super().__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            with _counting_errors(self._metrics, "cancel"):
                await super().__aexit__(exc_type, exc, tb)
        finally:
            self._metrics.uploads_in_progress.dec()


class ObservedFilesystemBackend(FilesystemBackend):
    def __init__(self, root: Path, metrics: Metrics, open_files: int = 256) -> None:
        super().__init__(root, open_files)
        self._metrics = metrics

    async def start(self) -> None:
        with _counting_errors(self._metrics, "start"):
            await super().start()

    def writer(self, *, tee: Sha256 | None = None) -> ObservedWriter:
        return ObservedWriter(self.root, tee, self.owner, self._metrics)

    async def open(self, digest: Digest) -> SharedBlob:
        with _counting_errors(self._metrics, "open"):
            return await super().open(digest)

    async def stat(self, digest: Digest) -> int | None:
        with _counting_errors(self._metrics, "stat"):
            return await super().stat(digest)

    async def delete(self, digest: Digest) -> bool:
        with _counting_errors(self._metrics, "delete"):
            return await super().delete(digest)

    async def create_upload(self, upload_key: str) -> None:
        with _counting_errors(self._metrics, "create_upload"):
            await super().create_upload(upload_key)

    def _appender(
        self, path: Path, fd: int, offset: int, hasher: Hasher | None
    ) -> ObservedAppender:
        return ObservedAppender(path, fd, offset, hasher, self._metrics)

    async def append_upload(
        self, upload_key: str, generation: str | None, offset: int, hasher: Hasher | None
    ) -> FilesystemAppender:
        with _counting_errors(self._metrics, "append_upload"):
            return await super().append_upload(upload_key, generation, offset, hasher)

    async def fork_upload(
        self, upload_key: str, source: str | None, target: str, size_bytes: int
    ) -> None:
        with _counting_errors(self._metrics, "fork_upload"):
            await super().fork_upload(upload_key, source, target, size_bytes)

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
        with _counting_errors(self._metrics, "commit"):
            await super().commit_upload(
                upload_key, generation, size_bytes, expected, hasher, before_store=before_store
            )

    async def delete_upload(self, upload_key: str, generation: str | None) -> None:
        with _counting_errors(self._metrics, "delete_upload"):
            await super().delete_upload(upload_key, generation)

    async def remove_temp_files(self, names: list[str]) -> int:
        with _counting_errors(self._metrics, "sweep"):
            return await super().remove_temp_files(names)

    async def remove_stale_uploads(self, max_age_seconds: float) -> int:
        with _counting_errors(self._metrics, "sweep"):
            return await super().remove_stale_uploads(max_age_seconds)
