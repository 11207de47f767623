"""Any backend, counted: uploads in progress and storage errors by operation.

A wrapper by composition, so every backend gets the same metrics; what is
counted is each protocol method, under the operation names the metrics use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar

from registryd.digest import Digest, Hasher, Sha256
from registryd.errors import StorageFull, StorageUnavailable
from registryd.storage.base import Backend, BlobWriter, OpenBlob, TempFile, UploadAppender

_Inner = TypeVar("_Inner", bound=BlobWriter | UploadAppender)


class _Gauge(Protocol):
    def inc(self) -> None: ...

    def dec(self) -> None: ...


class _Counter(Protocol):
    def inc(self) -> None: ...


class _LabelledCounter(Protocol):
    def labels(self, operation: str) -> _Counter: ...


class StorageMetrics(Protocol):
    """What is counted (registryd.ops.metrics.Metrics has it)."""

    @property
    def uploads_in_progress(self) -> _Gauge: ...

    @property
    def storage_errors(self) -> _LabelledCounter: ...


class _counting_errors:
    """``with``: count a storage error by ``operation`` and let it go on.

    A class, not a generator-based context manager: it wraps every blob open, and
    the generator costs a few microseconds a request more.
    """

    __slots__ = ("_metrics", "_operation")

    def __init__(self, metrics: StorageMetrics, operation: str) -> None:
        self._metrics = metrics
        self._operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:  # None: never swallows the error
        if exc is not None and isinstance(exc, (OSError, StorageFull, StorageUnavailable)):
            self._metrics.storage_errors.labels(self._operation).inc()


class _CountedUpload(Generic[_Inner]):
    """A writer or appender counted as an upload in progress for as long as it is open,
    its write errors counted by operation."""

    def __init__(self, inner: _Inner, metrics: StorageMetrics) -> None:
        self._inner: _Inner = inner
        self._metrics = metrics

    @property
    def size_bytes(self) -> int:
        return self._inner.size_bytes

    async def write(self, data: bytes | memoryview) -> None:
        with _counting_errors(self._metrics, "write"):
            await self._inner.write(data)

    async def __aenter__(self) -> Self:
        self._metrics.uploads_in_progress.inc()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            with _counting_errors(self._metrics, "cancel"):
                await self._inner.__aexit__(exc_type, exc, tb)
        finally:
            self._metrics.uploads_in_progress.dec()


class ObservedWriter(_CountedUpload[BlobWriter]):
    @property
    def temp_path(self) -> Path | None:
        return self._inner.temp_path

    def digest(self) -> Digest:
        return self._inner.digest()

    async def commit(
        self,
        expected: Digest | None = None,
        *,
        before_store: Callable[[Digest], Awaitable[None]] | None = None,
    ) -> Digest:
        with _counting_errors(self._metrics, "commit"):
            return await self._inner.commit(expected, before_store=before_store)

    async def cancel(self) -> None:
        with _counting_errors(self._metrics, "cancel"):
            await self._inner.cancel()


class ObservedAppender(_CountedUpload[UploadAppender]):
    """One v2 chunk request's appender, counted."""

    async def finish(self) -> int:
        with _counting_errors(self._metrics, "commit"):
            return await self._inner.finish()


class ObservedBackend:
    """``inner`` with its uploads and errors counted in ``metrics``."""

    def __init__(self, inner: Backend, metrics: StorageMetrics) -> None:
        self.inner = inner
        self._metrics = metrics
        self.follows_writes = inner.follows_writes

    # The owner key lives on the inner backend, which names its temp objects with it.
    @property
    def owner(self) -> int:
        return self.inner.owner

    @owner.setter
    def owner(self, key: int) -> None:
        self.inner.owner = key

    async def start(self) -> None:
        with _counting_errors(self._metrics, "start"):
            await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def check(self, min_free_bytes: int) -> str | None:
        return await self.inner.check(min_free_bytes)

    def sweep_open_files(self) -> int:
        return self.inner.sweep_open_files()

    async def redirect_url(self, digest: Digest, expires_seconds: int) -> str | None:
        with _counting_errors(self._metrics, "open"):
            return await self.inner.redirect_url(digest, expires_seconds)

    def writer(self, *, tee: Sha256 | None = None) -> ObservedWriter:
        return ObservedWriter(self.inner.writer(tee=tee), self._metrics)

    async def open(self, digest: Digest, size_bytes: int | None = None) -> OpenBlob:
        with _counting_errors(self._metrics, "open"):
            return await self.inner.open(digest, size_bytes)

    async def stat(self, digest: Digest) -> int | None:
        with _counting_errors(self._metrics, "stat"):
            return await self.inner.stat(digest)

    async def delete(self, digest: Digest) -> bool:
        with _counting_errors(self._metrics, "delete"):
            return await self.inner.delete(digest)

    async def list_blobs(self) -> AsyncIterator[Digest]:
        with _counting_errors(self._metrics, "list"):
            async for digest in self.inner.list_blobs():
                yield digest

    async def create_upload(self, upload_key: str) -> None:
        with _counting_errors(self._metrics, "create_upload"):
            await self.inner.create_upload(upload_key)

    async def append_upload(
        self, upload_key: str, generation: str | None, offset: int, hasher: Hasher | None
    ) -> ObservedAppender:
        with _counting_errors(self._metrics, "append_upload"):
            appender = await self.inner.append_upload(upload_key, generation, offset, hasher)
        return ObservedAppender(appender, self._metrics)

    async def fork_upload(
        self, upload_key: str, source: str | None, target: str, size_bytes: int
    ) -> None:
        with _counting_errors(self._metrics, "fork_upload"):
            await self.inner.fork_upload(upload_key, source, target, size_bytes)

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
            await self.inner.commit_upload(
                upload_key, generation, size_bytes, expected, hasher, before_store=before_store
            )

    async def delete_upload(self, upload_key: str, generation: str | None) -> None:
        with _counting_errors(self._metrics, "delete_upload"):
            await self.inner.delete_upload(upload_key, generation)

    async def temp_files(self) -> list[TempFile]:
        with _counting_errors(self._metrics, "sweep"):
            return await self.inner.temp_files()

    async def remove_temp_files(self, names: list[str]) -> int:
        with _counting_errors(self._metrics, "sweep"):
            return await self.inner.remove_temp_files(names)

    async def remove_stale_uploads(self, max_age_seconds: float) -> int:
        with _counting_errors(self._metrics, "sweep"):
            return await self.inner.remove_stale_uploads(max_age_seconds)
