"""``registryd scrub``: re-hash every blob file and compare the store with the ``blobs`` table.

Three kinds of problem: a file whose bytes do not hash to its name (corrupt),
a file no row accounts for (orphan; files whose removal is pending are not
counted), and a row whose file is gone (lost). ``--repair`` removes corrupt
and orphaned files and the rows and repository links of corrupt and lost
blobs (v1 images that used one go back to "uploading"), so clients push them
again. Every repair claims the blob's row first, as writers and the collector
do, so it never removes a file a concurrent push is placing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from registryd.db import gc_queries
from registryd.db.conn import Conn
from registryd.digest import Digest, Hasher
from registryd.domain.services import Services
from registryd.errors import BlobUnknown
from registryd.storage.base import OpenBlob

CORRUPT = "corrupt"
ORPHAN = "file without row"
LOST = "row without file"


@dataclass
class ScrubReport:
    checked: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (kind, digest)
    repaired: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def render(self) -> str:
        width = max([len(k) for k, _ in self.problems] + [len("problem")])
        lines = [f"{'problem':<{width}}  digest  repaired"] if self.problems else []
        done = set(self.repaired)
        lines += [
            f"{kind:<{width}}  {digest}  {'yes' if digest in done else 'no'}"
            for kind, digest in self.problems
        ]
        lines.append(f"checked {self.checked} blob file(s): {len(self.problems)} problem(s)")
        return "\n".join(lines)


async def _hash(blob: OpenBlob, algorithm: str) -> Digest:
    hasher = Hasher(algorithm)
    loop = asyncio.get_running_loop()
    async for chunk in blob.read_range(0, blob.size_bytes):
        await loop.run_in_executor(None, hasher.update, chunk)
    return hasher.digest()


async def _rehash(svc: Services, digest: Digest) -> Digest | None:
    """What the stored file hashes to; None when it is gone."""
    try:
        blob = await svc.storage.open(digest)
    except BlobUnknown:
        return None
    try:
        return await _hash(blob, digest.algorithm)
    finally:
        await blob.close()


async def scrub(svc: Services, *, repair: bool = False) -> ScrubReport:
    report = ScrubReport()
    async with svc.pool.acquire() as conn:
        rows = await gc_queries.fetch_blob_sizes(conn)
        pending = set(await gc_queries.fetch_pending_removals(conn))
    seen: set[str] = set()
    async for digest in svc.storage.list_blobs():
        key = str(digest)
        seen.add(key)
        report.checked += 1
        actual = await _rehash(svc, digest)
        if actual is None:
            continue  # removed while we walked
        if actual != digest:
            report.problems.append((CORRUPT, key))
        elif key not in rows and key not in pending:
            report.problems.append((ORPHAN, key))
    for key in sorted(set(rows) - seen):
        report.problems.append((LOST, key))
    # Re-check under locks before calling anything a problem: writers and the
    # collector kept working while we walked.
    confirmed: list[tuple[str, str]] = []
    for kind, key in report.problems:
        if await _confirm_and_repair(svc, kind, Digest.parse(key), repair):
            confirmed.append((kind, key))
            if repair:
                report.repaired.append(key)
    report.problems = confirmed
    return report


async def _remove_orphan(svc: Services, conn: Conn, digest: Digest, repair: bool) -> bool:
    """Whether a file without a row is still there (then, with ``repair``, remove it).

    The digest is claimed with a row of our own: a writer placing this file now
    has inserted one first (we wait for it, then see it), one arriving later
    waits for us. The claim is deleted again in the same transaction.
    """
    if not await gc_queries.claim_blob_row(conn, digest):
        return False
    still_there = await svc.storage.stat(digest) is not None
    if still_there and repair:
        await svc.storage.delete(digest)
    await gc_queries.delete_blob_row(conn, digest)
    return still_there


async def _confirm_and_repair(svc: Services, kind: str, digest: Digest, repair: bool) -> bool:
    """Whether the problem is still there (then, with ``repair``, fix it)."""
    async with svc.pool.acquire() as conn, conn.transaction():
        if kind == ORPHAN:
            return await _remove_orphan(svc, conn, digest, repair)
        if not await gc_queries.lock_blob_row_exclusively(conn, digest):
            # No row (any more): a corrupt file is then an orphan too.
            return kind == CORRUPT and await _remove_orphan(svc, conn, digest, repair)
        stored = await _rehash(svc, digest)
        if kind == LOST and stored is not None:
            return False
        if kind == CORRUPT and stored in (None, digest):
            return False
        if repair:
            if stored is not None:
                await svc.storage.delete(digest)
            await gc_queries.delete_blob_rows_and_references(conn, digest)
        return True
