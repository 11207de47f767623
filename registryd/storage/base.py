"""The storage backend interface every backend (filesystem today, object stores later) meets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from registryd.digest import Digest, Hasher, Sha256

if TYPE_CHECKING:
    from registryd.storage.filesystem import TempFile


class BlobWriter(Protocol):
    """A pending blob: bytes go to a temporary place until ``commit``.

    Use it as an async context manager: leaving without ``commit`` cancels it,
    so an exception or a client disconnect never leaves anything behind.
    """

    @property
    def size_bytes(self) -> int: ...

    def digest(self) -> Digest:
        """The digest of the bytes written so far (what ``commit`` will store them as)."""

    async def write(self, data: bytes | memoryview) -> None:
        """Hash and append ``data``; file IO runs off the event loop."""

    async def commit(
        self,
        expected: Digest | None = None,
        *,
        before_store: Callable[[Digest], Awaitable[None]] | None = None,
    ) -> Digest:
        """Make the bytes durable at their content address and return the digest.

        Raises DigestMismatch (and cancels) when ``expected`` is given and differs.
        ``before_store`` runs once the bytes are durable and before they appear
        at their address (e.g. to record the blob first); if it raises, the
        bytes are discarded. Committing bytes that are already stored keeps one copy.
        """

    async def cancel(self) -> None:
        """Discard the pending bytes. Safe to call more than once."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class UploadAppender(Protocol):
    """One request's bytes appended to an upload session's temp file.

    Use it as an async context manager: leaving without ``finish`` truncates the
    file back to where this request started, so a failed chunk leaves no trace.
    """

    @property
    def size_bytes(self) -> int:
        """The session's total size so far, this request's bytes included."""

    async def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` (and feed the hasher); file IO runs off the event loop."""

    async def finish(self) -> int:
        """Make the bytes durable (fsync) and return the session's total size."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class OpenBlob(Protocol):
    """A committed blob opened for reading."""

    @property
    def size_bytes(self) -> int: ...

    def fileno(self) -> int:
        """The descriptor to read from, with positional reads only (``sendfile`` or
        ``pread`` with an offset): it may be shared with concurrent readers."""

    async def close(self) -> None: ...


class Backend(Protocol):
    # The key of this process (registryd.db.process_owner), carried by its temp files.
    owner: int

    async def start(self) -> None:
        """Prepare the store (create directories, private to the server)."""

    def writer(self, *, tee: Sha256 | None = None) -> BlobWriter:
        """A new pending blob; ``tee`` also sees every byte, in the same pass."""

    async def open(self, digest: Digest) -> OpenBlob:
        """Open a committed blob; raise BlobUnknown if it is not stored."""

    async def stat(self, digest: Digest) -> int | None:
        """The blob's size in bytes, or None when it is not stored."""

    async def delete(self, digest: Digest) -> bool:
        """Remove a committed blob; return whether it existed."""

    def list_blobs(self) -> AsyncIterator[Digest]:
        """Every committed blob, in no particular order (for scrub; may miss concurrent ones)."""

    async def create_upload(self, upload_key: str) -> None:
        """Create the empty first file of an upload session."""

    async def append_upload(
        self, upload_key: str, generation: str | None, offset: int, hasher: Hasher | None
    ) -> UploadAppender:
        """Continue the session's file ``generation`` at ``offset`` (bytes past it are dropped).

        ``hasher``, if given, has seen exactly the first ``offset`` bytes and sees
        every new one. Raises UploadUnknown when the file is gone or shorter.
        """

    async def fork_upload(
        self, upload_key: str, source: str | None, target: str, size_bytes: int
    ) -> None:
        """Copy the first ``size_bytes`` of generation ``source`` into a new file of
        generation ``target`` and remove the old one; raise UploadUnknown.

        For a takeover: whoever held the claim before may still write to the old
        file, never to the new one.
        """

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
        """Verify the session's bytes against ``expected`` and store them as that blob.

        Without a ``hasher`` of the expected algorithm the file is re-hashed
        (the state may have lived in another process). ``before_store`` runs
        between verification and the rename (if it raises, nothing is stored).
        Raises DigestMismatch (the file stays, for the caller to delete) or
        UploadUnknown.
        """

    async def delete_upload(self, upload_key: str, generation: str | None) -> None:
        """Remove a session's file of ``generation``; a missing file is fine."""

    async def temp_files(self) -> list[TempFile]:
        """Every temp file of the store, for the sweeper to judge."""

    async def remove_temp_files(self, names: list[str]) -> int:
        """Remove temp files by name; return how many existed."""

    async def remove_stale_uploads(self, max_age_seconds: float) -> int:
        """Remove temp files untouched for ``max_age_seconds``; return how many."""
