"""v2 blobs: a repository holds a blob once it was uploaded or mounted there.

The bytes and the ``blobs`` row are shared by every repository and by v1 layers;
a repository's claim on them is a link. Deleting a blob removes only the link
(the bytes may be a layer elsewhere; reclaiming them is garbage collection), and
is refused while a manifest of the repository refers to the blob.
"""

from __future__ import annotations

from registryd.db import blob_queries, gc_holds, reference_queries, repository_queries
from registryd.db.repository_queries import RepositoryRow
from registryd.digest import Digest
from registryd.domain import repositories
from registryd.domain.services import Services
from registryd.errors import BlobUnknown, StillReferenced
from registryd.names import RepositoryName
from registryd.storage.base import OpenBlob


async def linked_size(svc: Services, repo: RepositoryRow, digest: Digest) -> int | None:
    """The size of a blob the repository holds, or None: from the per-process cache of
    access facts when it is on (a deleted link empties it, see access/facts.py)."""
    if svc.access is not None:
        return await svc.access.blob_size(repo.repository_id, digest)
    async with svc.pool.acquire() as conn:
        return await blob_queries.fetch_repository_blob_size(conn, repo.repository_id, digest)


async def blob_size(svc: Services, name: RepositoryName, digest: Digest) -> int:
    """The size of a blob the repository holds; raise BlobUnknown (the bytes are not read)."""
    repo = await repositories.resolve(svc, name)
    size = await linked_size(svc, repo, digest) if repo is not None else None
    if size is None:
        raise BlobUnknown(str(digest))
    return size


async def open_or_redirect(
    svc: Services, name: RepositoryName, digest: Digest, redirect_seconds: int | None
) -> OpenBlob | str:
    """A blob of the repository: a URL of it valid for ``redirect_seconds`` if given and
    the storage offers one (None: serve it here), else the blob opened for reading;
    raise BlobUnknown. The repository's hold on it is looked up once for both."""
    size = await blob_size(svc, name, digest)
    if redirect_seconds is not None:
        url = await svc.storage.redirect_url(digest, redirect_seconds)
        if url is not None:
            return url
    return await svc.storage.open(digest, size)


async def delete_blob(svc: Services, name: RepositoryName, digest: Digest) -> None:
    """Remove the blob from the repository; raise BlobUnknown if it was not there, or
    StillReferenced while a manifest of the repository refers to it."""
    async with svc.pool.acquire() as conn, conn.transaction():
        repo = await repository_queries.fetch_repository(conn, name)
        # Lock first, then look (a new snapshot): a manifest PUT holding the link FOR
        # SHARE has committed by then, and its reference is seen.
        if repo is None or not await reference_queries.lock_blob_link(
            conn, repo.repository_id, digest
        ):
            raise BlobUnknown(str(digest))
        referrer = await reference_queries.fetch_referencing_manifest(
            conn, repo.repository_id, digest
        )
        if referrer is not None:
            raise StillReferenced(str(digest), str(referrer))
        await blob_queries.unlink_blob(conn, repo.repository_id, digest)


async def mount_blob(
    svc: Services, name: RepositoryName, source: RepositoryName, digest: Digest
) -> bool:
    """Link a blob ``source`` holds into ``name`` (spec end-11); False if ``source`` lacks it.

    The caller has checked that the client may read ``source``.
    """
    async with svc.pool.acquire() as conn:
        source_repo = await repository_queries.fetch_repository(conn, source)
        if source_repo is None:
            return False
        size = await blob_queries.fetch_repository_blob_size(
            conn, source_repo.repository_id, digest
        )
    if size is None or await svc.storage.stat(digest) is None:
        return False
    async with svc.pool.acquire() as conn, conn.transaction():
        # Held until the link commits; collected meanwhile: nothing to mount (db/gc_holds.py).
        if not await gc_holds.hold_existing_blob(conn, digest):
            return False
        repo = await repository_queries.ensure_repository(conn, name)
        await gc_holds.link_blob(conn, repo.repository_id, digest)
    return True
