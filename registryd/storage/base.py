"""The storage backend interface every backend (filesystem, s3) meets.

Above storage, code names only these protocols, never a concrete backend. The
layer knows bytes and keys: content addresses (digests), upload session keys,
and the owner key of the process whose temp objects they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from registryd.digest import Digest, Hasher, Sha256


@dataclass(frozen=True, slots=True)
class TempFile:
    """A temporary object of the store (file, object or unfinished multipart upload),
    as the sweeper sees it; ``name`` is the backend's own, for ``remove_temp_files``."""

    name: str
    mtime: float
    # A session's bytes: its upload key and generation (None: the first).
    upload_key: str | None = None
    generation: str | None = None
    # A process's temp object: the owner's key.
    owner: int | None = None
    # A session's write still in flight (an unfinished multipart upload): only a
    # request holding the session's claim writes one, so it is an orphan once the
    # session is not claimed.
    partial: bool = False


class BlobWriter(Protocol):
    """A pending blob: bytes go to a temporary place until ``commit``.

    Use it as an async context manager: leaving without ``commit`` cancels it,
    so an exception or a client disconnect never leaves anything behind.
    """

    @property
    def size_bytes(self) -> int: ...

    @property
    def temp_path(self) -> Path | None:
        """A local file that grows as bytes are written (readers may follow a write in
        flight), or None when the bytes go elsewhere."""

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
    """A committed blob opened for reading: a local descriptor, or ranged reads."""

    @property
    def size_bytes(self) -> int: ...

    def fileno(self) -> int | None:
        """A local descriptor to read from, with positional reads only (``sendfile`` or
        ``pread`` with an offset: it may be shared with concurrent readers); None
        when the bytes are not in a local file (use ``read_range``)."""

    def read_range(self, offset: int, count: int) -> AsyncIterator[bytes]:
        """The ``count`` bytes from ``offset``, in pieces of bounded size.

        Raises OSError when the blob is shorter than that.
        """

    async def close(self) -> None: ...


async def read_bytes(blob: OpenBlob, offset: int, count: int) -> bytes:
    """``count`` bytes of ``blob`` from ``offset``, joined (for small reads only)."""
    return b"".join([piece async for piece in blob.read_range(offset, count)])


class Backend(Protocol):
    # The key of this process (registryd.db.process_owner), carried by its temp files.
    owner: int
    # Whether a writer's bytes land in a local file (``temp_path``) as they arrive, which
    # readers on this host may follow before the commit (the mirror's followers do).
    follows_writes: bool

    async def start(self) -> None:
        """Prepare the store (create directories, private to the server; connect)."""

    async def close(self) -> None:
        """Release what the backend holds (descriptors, connections)."""

    async def check(self, min_free_bytes: int) -> str | None:
        """None when new blobs can be written (and, where the store knows its free
        space, at least ``min_free_bytes`` are free), else why not. For /readyz:
        no side effects; the caller bounds it in time."""

    def sweep_open_files(self) -> int:
        """Release cached read handles of removed blobs; return how many (0: none kept)."""

    async def redirect_url(self, digest: Digest, expires_seconds: int) -> str | None:
        """A short-lived URL a client may GET the blob's bytes from (Range included)
        instead of this server, or None to serve them here. Does not check that the
        blob exists."""

    def writer(self, *, tee: Sha256 | None = None) -> BlobWriter:
        """A new pending blob; ``tee`` also sees every byte, in the same pass."""

    async def open(self, digest: Digest, size_bytes: int | None = None) -> OpenBlob:
        """Open a committed blob; raise BlobUnknown if it is not stored.

        ``size_bytes``: its size as the caller knows it (the database's row). A store
        that would have to ask for it (s3: a HEAD request per pull) trusts it instead
        and learns that the blob is gone when it is read (OSError, as for a short file).
        """

    async def stat(self, digest: Digest) -> int | None:
        """The blob's size in bytes, or None when it is not stored."""

    async def delete(self, digest: Digest) -> bool:
        """Remove a committed blob; return whether it existed."""

    def list_blobs(self) -> AsyncIterator[Digest]:
        """Every committed blob, in no particular order (for scrub; may miss concurrent ones)."""

    async def create_upload(self, upload_key: str) -> None:
        """Create the empty first generation of an upload session."""

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
