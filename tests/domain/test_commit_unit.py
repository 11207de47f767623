""" "Commit the bytes and record the row" is one unit that a cancel cannot split and that
shutting down waits for, for v2 uploads as for v1 layers.

The store is made slow at the moment of commit (a fault a test cannot cause
with a real disk on cue): the request is cancelled there, as a drain does,
and the pool is closed right after ``wait_for_commits``, as the app does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from registryd.config import Settings
from registryd.db.pool import create_pool
from registryd.digest import Digest, Hasher
from registryd.domain import uploads
from registryd.domain.commits import wait_for_commits
from registryd.domain.services import Services
from registryd.names import RepositoryName
from registryd.storage.filesystem import FilesystemBackend
from tests.support.store import blob_files, upload_files

DATA = b"session bytes " * 10_000


class SlowCommitBackend(FilesystemBackend):
    """Commits wait until released, so that a cancel arrives mid-commit."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]  # FilesystemBackend's own
        self.committing = asyncio.Event()
        self.release = asyncio.Event()

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
        self.committing.set()
        await self.release.wait()
        await super().commit_upload(
            upload_key, generation, size_bytes, expected, hasher, before_store=before_store
        )


async def test_a_v2_commit_cancelled_midway_is_finished_before_the_pool_closes(
    settings: Settings, db: asyncpg.Connection
) -> None:
    storage = SlowCommitBackend(settings.storage_root)
    await storage.start()
    assert settings.database_url is not None
    pool = await create_pool(settings.database_url, settings)
    svc = Services(pool, storage, settings, b"")
    name = RepositoryName.parse_oci("alice/app")
    digest = Digest.sha256_of(DATA)

    async def body() -> AsyncIterator[bytes]:
        yield DATA

    try:
        upload_id = await uploads.start_upload(svc, name, None)
        complete = asyncio.create_task(
            uploads.complete_upload(svc, name, upload_id, digest, body())
        )
        await storage.committing.wait()
        complete.cancel()  # the drain cancels the request mid-commit
        await asyncio.sleep(0.05)
        storage.release.set()
        await asyncio.gather(complete, return_exceptions=True)
        assert await wait_for_commits(svc, 10) in (0, 1)
    finally:
        await pool.close()
        await storage.close()
    # Bytes, blob row, link and the session's end: all of it, none split.
    assert [p.name for p in blob_files(settings)] == [digest.hex]
    assert await db.fetchval("SELECT size_bytes FROM blobs WHERE digest = $1", str(digest)) == len(
        DATA
    )
    assert await db.fetchval("SELECT count(*) FROM v2_uploads") == 0
    assert await db.fetchval("SELECT count(*) FROM v2_repository_blobs") == 1
    assert upload_files(settings) == []
