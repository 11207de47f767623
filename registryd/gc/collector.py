"""One garbage collection run: retention, expired uploads, then the review queues.

Each queue is worked through in batches, each batch one transaction that
locks its candidates ``FOR UPDATE SKIP LOCKED``, deletes those that are not
live (the rules are the statements in ``db/gc_queries.py``), and closes or
postpones their reviews. Deleting one thing queues reviews of what it referred
to (manifest → links → blobs; v1 image → parent and layer), so the queues are
worked through again until nothing is due, ``gc_max_seconds`` is up, or the
run is cancelled; whatever is left is still queued for the next run.

Blob files go last, in this order: the blob's row is deleted and its file
recorded in ``blob_deletions`` (one transaction); then, in another, that
record is locked, the file removed and the record deleted. A crash in
between leaves the record, and the next run removes the file.

A dry run does all of this in one transaction (batches are savepoints) that
is rolled back at the end, and removes no file: its report is exact, but the
rows it found dead stay locked until it ends.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

from registryd.config import RetentionRule
from registryd.db import gc_queries
from registryd.db.conn import Conn
from registryd.db.gc_queries import Review
from registryd.digest import Digest
from registryd.domain.services import Services
from registryd.gc.report import Report

log = logging.getLogger(__name__)

# Rows per transaction: large enough to amortise round trips, small enough that
# a writer reviving one of them waits only briefly.
BATCH = 500
# Blob files removed at once (each on an executor thread).
FILE_CONCURRENCY = 8
# How long a batch waits for a row lock before it yields to the writer holding it.
LOCK_TIMEOUT_MS = 500
# Smallest batch when gc_max_deletes_per_second paces the run.
MIN_PACED_BATCH = 20

# Test hook: awaited at named points of a run (see PAUSE_POINTS); None in production.
Pause = Callable[[str], Awaitable[None]]
PAUSE_POINTS = (
    "manifests locked",  # manifest rows locked, not yet judged
    "v1 images locked",  # v1 image rows locked, not yet judged
    "links locked",  # link rows locked, not yet judged
    "blobs locked",  # blob rows locked, not yet judged
    "blob rows deleted",  # dead blob rows deleted, transaction still open
    "blob rows committed",  # rows gone, files not yet removed
    "removing files",  # blob_deletions rows locked, files not yet removed
)


class Collector:
    def __init__(self, svc: Services, pause: Pause | None = None) -> None:
        self.svc = svc
        settings = svc.settings
        self.grace = float(settings.gc_grace_seconds)
        self.untagged = float(settings.gc_untagged_seconds)
        self.stale_upload = float(settings.stale_upload_seconds)
        self.max_seconds = float(settings.gc_max_seconds)
        self.retention: tuple[RetentionRule, ...] = settings.retention
        self.max_deletes_per_second = settings.gc_max_deletes_per_second
        # Paced, batches are small enough to come about ten times a second, so the work
        # (and the CPU it takes from clients) is spread out instead of coming in bursts.
        self.batch = (
            max(MIN_PACED_BATCH, min(BATCH, self.max_deletes_per_second // 10))
            if self.max_deletes_per_second > 0
            else BATCH
        )
        self._pause = pause
        self._yielded = False  # a batch gave way to a writer this run
        self._paced_since = 0.0
        self._deleted = 0  # rows deleted this run, for the pace

    async def _at(self, point: str) -> None:
        if self._pause is not None:
            await self._pause(point)

    async def run(self, *, dry_run: bool = False) -> Report:
        """Collect once; the caller holds the collector lock (see ``periodic``)."""
        report = Report(dry_run=dry_run)
        started = time.monotonic()
        deadline = started + self.max_seconds
        self._yielded = False
        self._paced_since, self._deleted = started, 0
        async with self.svc.pool.acquire() as conn:
            # Never make a writer wait long: a batch that would wait gives up instead.
            await conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
            if dry_run:
                outer = conn.transaction()
                await outer.start()
                try:
                    await self._collect(conn, report, deadline)
                finally:
                    await outer.rollback()
            else:
                await self._collect(conn, report, deadline)
        report.seconds = time.monotonic() - started
        return report

    async def _collect(self, conn: Conn, report: Report, deadline: float) -> None:
        await self._apply_retention(conn, report)
        await self._expire_uploads(conn, report)
        if self.untagged > 0:
            await gc_queries.unpark_manifest_reviews(conn)
        if not report.dry_run:
            # Removals a crashed run left behind, and those a writer revived.
            await gc_queries.drop_revived_deletions(conn)
            await self._remove_files(conn, report, deadline)
        while time.monotonic() < deadline:
            done = await self._manifests(conn, report, deadline)
            done += await self._v1_images(conn, report, deadline)
            done += await self._links(conn, report, deadline)
            done += await self._blobs(conn, report, deadline)
            if done == 0:
                break
        report.finished = (
            not self._yielded
            and await gc_queries.pending_reviews(conn) == 0
            and (report.dry_run or await gc_queries.pending_file_removals(conn) == 0)
        )

    # Retention and uploads ---------------------------------------------------------

    def _rule_for(self, repository: str) -> RetentionRule | None:
        for rule in self.retention:
            if fnmatch.fnmatchcase(repository, rule.repositories):
                return rule
        return None

    async def _apply_retention(self, conn: Conn, report: Report) -> None:
        if not self.retention:
            return
        for repository_id, name in await gc_queries.fetch_repository_names(conn):
            rule = self._rule_for(name)
            if rule is None:
                continue
            async with conn.transaction():
                # v2 and v1 tags are ranked together: keep_last counts the repository's tags.
                tags = await gc_queries.fetch_tags_newest_first(conn, repository_id)
                doomed = [
                    tag
                    for i, tag in enumerate(tags)
                    if i >= rule.keep_last
                    and not any(fnmatch.fnmatchcase(tag.tag, p) for p in rule.keep_tags)
                ]
                deleted = [t for t in doomed if await _delete_tag_if_unchanged(conn, t)]
                if not deleted:
                    continue
                report.tags.setdefault(rule.repositories, []).extend(
                    f"{t.repository}:{t.tag}" + (" (v1)" if t.protocol == gc_queries.V1 else "")
                    for t in deleted
                )
                # The manifests these tags pointed at go now, unless still tagged or
                # referenced (untagged by a rule means unwanted, whatever their age).
                reviews = [
                    Review(repository_id, d, 0)
                    for d in {t.target for t in deleted if t.protocol == gc_queries.V2}
                ]
                if reviews:
                    locked = await gc_queries.lock_manifests(conn, reviews)
                    gone = await gc_queries.delete_dead_manifests(conn, locked, self.grace, 0.0)
                    report.manifests += [f"{m.repository}@{m.digest}" for m in gone]
                # v1 images are global: the repository only lets go of them (its tags,
                # and its declarations of what no remaining tag reaches); the review
                # queues then collect those nothing else keeps, by the usual rules.
                untagged_images = sorted({t.target for t in deleted if t.protocol == gc_queries.V1})
                if untagged_images:
                    await gc_queries.release_v1_declarations(conn, repository_id, untagged_images)

    async def _expire_uploads(self, conn: Conn, report: Report) -> None:
        async with conn.transaction():
            expired = await gc_queries.delete_expired_uploads(conn, self.stale_upload)
        report.uploads += len(expired)
        report.upload_bytes += sum(u.size_bytes for u in expired)
        if report.dry_run:
            return
        for upload in expired:
            self.svc.upload_hashes.drop(upload.upload_id)
            await self.svc.storage.delete_upload(upload.upload_id, upload.file_token)

    # Review queues ---------------------------------------------------------------------

    async def _drain(
        self,
        conn: Conn,
        fetch: Callable[[Conn, int], Awaitable[list[Review]]],
        batch: Callable[[Conn, list[Review]], Awaitable[int]],
        deadline: float,
        dry_run: bool,
    ) -> int:
        """Work through one queue's due reviews; return how many were handled.

        ``batch`` returns how many rows it deleted, which the pace counts.
        """
        done = 0
        while time.monotonic() < deadline and not self._yielded:
            reviews = await fetch(conn, self.batch)
            if not reviews:
                break
            try:
                deleted = await batch(conn, reviews)
            except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
                # A writer holds something this batch needs: writers go first, and
                # the batch (rolled back) waits for the next run.
                log.info("garbage collection yields to a writer; the next run resumes")
                self._yielded = True
                break
            done += len(reviews)
            if not dry_run:  # (a dry run holds its locks until it ends: never slowed)
                await self._pace(deleted, deadline)
        return done

    async def _pace(self, deleted: int, deadline: float) -> None:
        """Between batches, with nothing locked: wait until the rows deleted so far are
        within ``gc_max_deletes_per_second``."""
        self._deleted += deleted
        if self.max_deletes_per_second <= 0:
            return
        due = self._paced_since + self._deleted / self.max_deletes_per_second
        wait = min(due, deadline) - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _manifests(self, conn: Conn, report: Report, deadline: float) -> int:
        untagged = self.untagged if self.untagged > 0 else None

        async def batch(conn: Conn, reviews: list[Review]) -> int:
            async with conn.transaction():
                locked = await gc_queries.lock_manifests(conn, reviews)
                missing = await gc_queries.missing_manifests(conn, reviews)
                busy = _without(reviews, locked + missing)
                await self._at("manifests locked")
                gone = await gc_queries.delete_dead_manifests(conn, locked, self.grace, untagged)
                await gc_queries.finish_manifest_reviews(
                    conn, locked + missing, self.grace, self.untagged
                )
                await gc_queries.postpone_manifest_reviews(conn, busy)
            report.manifests += [f"{m.repository}@{m.digest}" for m in gone]
            return len(gone)

        return await self._drain(
            conn, gc_queries.due_manifest_reviews, batch, deadline, report.dry_run
        )

    async def _v1_images(self, conn: Conn, report: Report, deadline: float) -> int:
        async def batch(conn: Conn, reviews: list[Review]) -> int:
            ids = [r.key for r in reviews]
            async with conn.transaction():
                locked = await gc_queries.lock_v1_images(conn, ids)
                missing = await gc_queries.missing_v1_images(conn, ids)
                busy = sorted(set(ids) - set(locked) - set(missing))
                await self._at("v1 images locked")
                gone = await gc_queries.delete_dead_v1_images(
                    conn, locked, self.grace, self.stale_upload
                )
                finished = [r for r in reviews if r.key not in busy]
                await gc_queries.finish_v1_image_reviews(
                    conn, finished, self.grace, self.stale_upload
                )
                await gc_queries.postpone_v1_image_reviews(conn, busy)
            report.v1_images += gone
            return len(gone)

        return await self._drain(
            conn, gc_queries.due_v1_image_reviews, batch, deadline, report.dry_run
        )

    async def _links(self, conn: Conn, report: Report, deadline: float) -> int:
        async def batch(conn: Conn, reviews: list[Review]) -> int:
            async with conn.transaction():
                locked = await gc_queries.lock_links(conn, reviews)
                missing = await gc_queries.missing_links(conn, reviews)
                busy = _without(reviews, locked + missing)
                await self._at("links locked")
                deleted = await gc_queries.delete_dead_links(conn, locked, self.grace)
                await gc_queries.finish_link_reviews(conn, locked + missing, self.grace)
                await gc_queries.postpone_link_reviews(conn, busy)
            report.links += deleted
            return deleted

        return await self._drain(conn, gc_queries.due_link_reviews, batch, deadline, report.dry_run)

    async def _blobs(self, conn: Conn, report: Report, deadline: float) -> int:
        async def batch(conn: Conn, reviews: list[Review]) -> int:
            digests = [r.key for r in reviews]
            async with conn.transaction():
                locked = await gc_queries.lock_blobs(conn, digests)
                missing = await gc_queries.missing_blobs(conn, digests)
                busy = sorted(set(digests) - set(locked) - set(missing))
                await self._at("blobs locked")
                gone = await gc_queries.delete_dead_blobs(conn, locked, self.grace)
                await self._at("blob rows deleted")
                finished = [r for r in reviews if r.key not in busy]
                await gc_queries.finish_blob_reviews(conn, finished, self.grace)
                await gc_queries.postpone_blob_reviews(conn, busy)
            report.blobs += [(b.digest, b.size_bytes) for b in gone]
            if gone and not report.dry_run:
                await self._at("blob rows committed")
                await self._remove_files(conn, report, deadline)
            return len(gone)

        return await self._drain(conn, gc_queries.due_blob_reviews, batch, deadline, report.dry_run)

    async def _remove_files(self, conn: Conn, report: Report, deadline: float) -> None:
        """Remove the files of deleted blob rows, each while its pending record is locked."""

        async def remove(digest: str) -> bool | None:
            """True: removed; False: already gone; None: failed (kept for the next run)."""
            try:
                return await self.svc.storage.delete(Digest.parse(digest))
            except OSError:
                log.exception("removing the file of blob %s failed", digest)
                return None

        async def remove_all(digests: list[str]) -> list[bool | None]:
            """``remove`` each, FILE_CONCURRENCY at a time (a few workers, not a task each)."""
            results: list[bool | None] = [None] * len(digests)
            todo = iter(range(len(digests)))

            async def worker() -> None:
                for i in todo:
                    results[i] = await remove(digests[i])

            await asyncio.gather(*(worker() for _ in range(min(FILE_CONCURRENCY, len(digests)))))
            return results

        while time.monotonic() < deadline:
            async with conn.transaction():
                pending = await gc_queries.lock_pending_deletions(conn, self.batch)
                if not pending:
                    return
                await self._at("removing files")
                # A file already gone (removed before a crash) still counts as done.
                removed = await remove_all([p.digest for p in pending])
                done = [p.digest for p, r in zip(pending, removed, strict=True) if r is not None]
                await gc_queries.forget_pending_deletions(conn, done)
            report.files_removed += sum(1 for r in removed if r)
            report.bytes_freed += sum(
                p.size_bytes for p, r in zip(pending, removed, strict=True) if r
            )
            if len(done) < len(pending):
                return  # a failing store: try again next run, not in a loop now


async def _delete_tag_if_unchanged(conn: Conn, tag: gc_queries.TagRow) -> bool:
    if tag.protocol == gc_queries.V1:
        return await gc_queries.delete_v1_tag_if_unchanged(conn, tag)
    return await gc_queries.delete_v2_tag_if_unchanged(conn, tag)


def _without(reviews: list[Review], handled: list[Review]) -> list[Review]:
    keys = {(r.repository_id, r.key) for r in handled}
    return [r for r in reviews if (r.repository_id, r.key) not in keys]
