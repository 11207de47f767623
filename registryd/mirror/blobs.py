"""Mirrored blobs: one upstream read serves the clients and fills the cache.

On a miss, a download task streams the upstream's body into an upload session
of the store (the temp file v2 uploads use), hashing as it goes, and commits it
at its content address only when the digest matches; anything else (a cut
connection, a short body, another digest) discards it, so the next request
starts over. Every request for that digest meanwhile (the first one too)
follows the growing temp file: it sends what has arrived, then waits on the
download's condition for more, so sixteen nodes pulling one layer cost one
upstream GET and none waits for the end. A range is answered as its bytes land.

Across processes, a PostgreSQL advisory lock per digest lets one process
download; it announces its temp file in ``mirror_downloads`` once the first
bytes are in, and the other processes' download tasks follow that file as it
grows (polling its size; the store is one filesystem), so their clients stream
too. Where the file cannot be seen (another host), they wait for the lock and
serve the stored blob. Where nothing local grows at all (the s3 store), each
request streams from the upstream itself while the download stores the blob
once (see ``_pass_through``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web
from aiohttp.http_writer import StreamWriter

from registryd.db import blob_queries, gc_holds, mirror_queries, repository_queries
from registryd.digest import Digest, Hasher
from registryd.errors import BlobUnknown, DigestMismatch
from registryd.http import sendfile
from registryd.http.streaming import (
    READ_CHUNK_BYTES,
    RangeNotSatisfiable,
    parse_range,
    send_blob,
)
from registryd.mirror.errors import UpstreamError, UpstreamInvalid, UpstreamUnavailable
from registryd.mirror.routing import Target
from registryd.mirror.service import Mirror
from registryd.names import RepositoryName
from registryd.storage.base import OpenBlob

log = logging.getLogger(__name__)

# Bytes asked of the upstream connection per read (what is buffered, at most this).
_UPSTREAM_READ_BYTES = 1024 * 1024
# Following another process's download: how often its temp file is looked at, how often
# its announcement is looked for, and after how long without growth its lock is checked.
_FOLLOW_POLL_SECONDS = 0.01
_ANNOUNCE_POLL_SECONDS = 0.05
_HOLDER_CHECK_SECONDS = 1.0


class Download:
    """One blob coming from an upstream, followed by every request that wants it."""

    def __init__(self, digest: Digest, target: Target) -> None:
        self.digest = digest
        self.target = target
        self.size: int | None = None  # the upstream's Content-Length, once known
        self.received = 0
        self.path: Path | None = None  # the growing temp file followers read
        self.committed = False
        self.error: BaseException | None = None
        self.changed = asyncio.Condition()
        self.waiters = 0

    @property
    def over(self) -> bool:
        return self.committed or self.error is not None

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait_past(self, offset: int) -> None:
        """Until byte ``offset`` has arrived, or the download is over."""
        await self.wait_for(lambda: self.received > offset or self.over)

    async def wait_for(self, ready: Callable[[], bool]) -> None:
        async with self.changed:
            await self.changed.wait_for(ready)


def _headers(digest: Digest) -> dict[str, str]:
    return {
        "Docker-Content-Digest": str(digest),
        "ETag": f'"{digest}"',
        "Cache-Control": "max-age=31536000",
    }


def _lock_key(digest: Digest) -> int:
    """A signed 64-bit advisory lock key from the digest (collisions only serialise)."""
    return int.from_bytes(bytes.fromhex(digest.hex[:16]), "big", signed=True)


async def get_blob(
    request: web.Request, mirror: Mirror, target: Target, digest: Digest
) -> web.StreamResponse:
    """GET/HEAD of a mirrored blob (the caller has authorized the read).

    A pull for the cache's LRU clock, in use (never evicted) until its body is sent.
    """
    with mirror.pulls.sending(target.local, digest):
        return await _get_blob(request, mirror, target, digest)


async def _get_blob(
    request: web.Request, mirror: Mirror, target: Target, digest: Digest
) -> web.StreamResponse:
    svc = mirror.svc
    name = target.upstream.namespace
    async with svc.pool.acquire() as conn:
        repo = await repository_queries.fetch_repository(conn, target.local)
        size = (
            await blob_queries.fetch_repository_blob_size(conn, repo.repository_id, digest)
            if repo is not None
            else None
        )
    if size is not None and (held := await _open_stored(mirror, digest)) is not None:
        mirror.metrics.hits.labels(name, "blob").inc()
        return await send_blob(request, held, _headers(digest), zero_copy=svc.settings.sendfile)
    download = mirror.downloads.get(digest)
    stored = await svc.storage.stat(digest) if download is None else None
    if stored is not None:
        # Another repository cached it: link it here once the upstream confirms this
        # repository has it (a digest alone must not open someone else's blob).
        await _confirm_upstream(mirror, target, digest)
        if (held := await _open_stored(mirror, digest)) is not None:
            if await _link(mirror, target.local, digest):
                mirror.metrics.hits.labels(name, "blob").inc()
                return await send_blob(
                    request, held, _headers(digest), zero_copy=svc.settings.sendfile
                )
            await held.close()  # collected meanwhile: fetch it again
    if request.method == "HEAD" and (download is None or not svc.storage.follows_writes):
        # A HEAD does not start a download: the upstream's answer is enough.
        return await _head_from_upstream(request, mirror, target, digest)
    # Looked up again with no await before the start: one download per digest.
    download = mirror.downloads.get(digest)
    if download is None:
        download = _start(mirror, target, digest)
    else:
        if download.target.local != target.local:
            # Coming for another repository: this one must hold it upstream too.
            await _confirm_upstream(mirror, target, digest)
        mirror.metrics.coalesced.labels(name).inc()
    return await _follow(request, mirror, download)


async def _head_from_upstream(
    request: web.Request, mirror: Mirror, target: Target, digest: Digest
) -> web.StreamResponse:
    length = await _confirm_upstream(mirror, target, digest)
    headers = {**_headers(digest), "Accept-Ranges": "bytes"}
    response = web.StreamResponse(status=200, headers=headers)
    response.content_type = "application/octet-stream"
    if length is not None:
        response.content_length = length
    await response.prepare(request)
    await response.write_eof()
    return response


async def _confirm_upstream(mirror: Mirror, target: Target, digest: Digest) -> int | None:
    try:
        return await mirror.client(target.upstream).head_blob(target.path, digest)
    except UpstreamError:
        mirror.metrics.upstream_errors.labels(target.upstream.namespace).inc()
        raise


async def _open_stored(mirror: Mirror, digest: Digest) -> OpenBlob | None:
    try:
        return await mirror.svc.storage.open(digest)
    except BlobUnknown:
        return None


async def _link(mirror: Mirror, name: RepositoryName, digest: Digest) -> bool:
    """Link a stored blob into the mirrored repository; False if it was collected meanwhile."""
    async with mirror.svc.pool.acquire() as conn, conn.transaction():
        if not await gc_holds.hold_existing_blob(conn, digest):
            return False
        repo = await repository_queries.ensure_repository(conn, name)
        await gc_holds.link_blob(conn, repo.repository_id, digest)
    return True


def _start(mirror: Mirror, target: Target, digest: Digest) -> Download:
    download = Download(digest, target)
    mirror.downloads[digest] = download
    task = asyncio.create_task(_download(mirror, download))
    mirror.tasks.add(task)
    task.add_done_callback(mirror.tasks.discard)
    return download


async def _download(mirror: Mirror, download: Download) -> None:
    """Run one download to its end; its outcome is on ``download`` for the followers."""
    target, digest = download.target, download.digest
    name = target.upstream.namespace
    mirror.metrics.downloads_in_progress.inc()
    started = time.monotonic()
    lock: asyncpg.Connection | None = None
    try:
        lock = await _lock_connection(mirror)
        if lock is not None and not await _take_lock(mirror, download, lock):
            return  # followed another process's download to its end
        size = await mirror.svc.storage.stat(digest)
        if size is not None and await _link(mirror, target.local, digest):
            # Another process stored it while we waited for its lock.
            download.size = download.received = size
            download.committed = True
            return
        await _fetch(mirror, download, lock)
        log.info(
            "upstream fetch",
            extra={
                "fields": {
                    "upstream": name,
                    "repository": target.path,
                    "kind": "blob",
                    "digest": str(digest),
                    "bytes": download.received,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    "followers": download.waiters,
                }
            },
        )
    except BaseException as exc:
        download.error = exc
        if isinstance(exc, BlobUnknown):
            log.info(
                "upstream has no such blob",
                extra={
                    "fields": {"upstream": name, "repository": target.path, "digest": str(digest)}
                },
            )
        elif not isinstance(exc, asyncio.CancelledError):
            mirror.metrics.upstream_errors.labels(name).inc()
            log.warning(
                "upstream fetch failed; nothing was stored",
                extra={
                    "fields": {
                        "upstream": name,
                        "repository": target.path,
                        "digest": str(digest),
                        "bytes": download.received,
                        "reason": getattr(exc, "reason", None) or repr(exc),
                    }
                },
            )
        if not isinstance(exc, Exception):
            raise
    finally:
        if mirror.downloads.get(digest) is download:
            del mirror.downloads[digest]
        mirror.metrics.downloads_in_progress.dec()
        if lock is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(_release(lock, digest))
        await download.notify()


async def _lock_connection(mirror: Mirror) -> asyncpg.Connection | None:
    """A connection of its own for the digest's advisory lock (held for the whole
    download: a pool connection would be kept from other requests); None without a
    database URL (one process)."""
    url = mirror.svc.settings.database_url
    if url is None:
        return None
    conn: asyncpg.Connection = await asyncpg.connect(url)
    return conn


async def _release(lock: asyncpg.Connection, digest: Digest) -> None:
    """Withdraw our announcement (if any) and drop the lock with the connection."""
    try:
        await mirror_queries.withdraw_download(lock, digest)
    finally:
        await lock.close()


async def _take_lock(mirror: Mirror, download: Download, lock: asyncpg.Connection) -> bool:
    """Take the digest's download lock; meanwhile follow the download of the process
    holding it. True: we hold the lock; False: we followed the other process's download
    to its end and the blob is stored (``download.committed``). Raise UpstreamUnavailable
    when that download failed after we had begun following it."""
    key = _lock_key(download.digest)
    while not await mirror_queries.try_download_lock(lock, key):
        row = await mirror_queries.fetch_download(lock, download.digest)
        if row is None:
            # Not announced yet: the holder waits for the upstream's first bytes.
            await asyncio.sleep(_ANNOUNCE_POLL_SECONDS)
            continue
        if await _follow_other_process(mirror, download, lock, row):
            return False
        # Its temp file is not visible here (another host, or it just ended): wait for
        # the lock, then serve what it stored. The holder's death releases the lock.
        await mirror_queries.take_download_lock(lock, key)
        return True
    # A row left by a holder that died is stale: nobody may follow it.
    await mirror_queries.delete_download(lock, download.digest)
    return True


async def _follow_other_process(
    mirror: Mirror, download: Download, lock: asyncpg.Connection, row: mirror_queries.DownloadRow
) -> bool:
    """Follow another process's download through its growing temp file (same store).

    False when the file cannot be seen from here; True once the blob it was writing is
    stored and linked to our repository. The holder renames the file into place only
    after verifying the digest, and removes it on any failure; a holder that dies
    leaves its lock, which we then take.
    """
    loop = asyncio.get_running_loop()
    path = Path(row.temp_path)
    target, digest = download.target, download.digest
    name = target.upstream.namespace
    try:
        grown = (await loop.run_in_executor(None, os.stat, path)).st_size
    except FileNotFoundError:
        return False
    mirror.metrics.coalesced.labels(name).inc()
    log.info(
        "following a download of another process",
        extra={"fields": {"upstream": name, "digest": str(digest), "bytes": row.size_bytes}},
    )
    download.path, download.size = path, row.size_bytes
    key = _lock_key(digest)
    held = False
    idle_since = time.monotonic()
    while True:
        if grown > download.received:
            download.received = min(grown, row.size_bytes)
            idle_since = time.monotonic()
            await download.notify()
        elif time.monotonic() - idle_since > _HOLDER_CHECK_SECONDS:
            if held := await mirror_queries.try_download_lock(lock, key):
                break  # the holder is gone (finished or died)
            idle_since = time.monotonic()
        await asyncio.sleep(_FOLLOW_POLL_SECONDS)
        try:
            grown = (await loop.run_in_executor(None, os.stat, path)).st_size
        except FileNotFoundError:
            break  # renamed into place, or discarded
    if not held:
        # The file is placed inside the holder's transaction, which commits the blob's
        # row; the holder lets the lock go after it, so then the row is visible.
        await mirror_queries.take_download_lock(lock, key)
    size = await mirror.svc.storage.stat(digest)
    if size != row.size_bytes or not await _link(mirror, target.local, digest):
        raise UpstreamUnavailable(name, "the download in another process did not complete")
    download.received = size
    download.committed = True
    return True


async def _announce(lock: asyncpg.Connection, download: Download) -> None:
    """Let other processes follow the temp file from now on. Best effort: if the database
    cannot be told, they wait for the end instead, and the download goes on."""
    assert download.path is not None
    assert download.size is not None
    try:
        await mirror_queries.insert_download(
            lock, download.digest, str(download.path), download.size
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        log.warning(
            "could not announce a download to the other processes",
            extra={"fields": {"digest": str(download.digest), "reason": repr(exc)}},
        )


async def _fetch(mirror: Mirror, download: Download, lock: asyncpg.Connection | None) -> None:
    target, digest = download.target, download.digest
    name = target.upstream.namespace
    if digest.algorithm != "sha256":
        # The store's writer names blobs by sha256 (the digest every client pushes).
        raise UpstreamInvalid(name, f"only sha256 blobs are mirrored, not {digest.algorithm}")
    storage = mirror.svc.storage
    client = mirror.client(target.upstream)
    # A temp file of this process: swept only once the process is dead, however long
    # the download runs; leaving the block without commit removes it.
    writer = storage.writer()
    download.path = writer.temp_path  # None: followers wait for the commit
    mirror.metrics.misses.labels(name, "blob").inc()
    async with writer:
        async with client.request("GET", f"/v2/{target.path}/blobs/{digest}", target.path) as resp:
            client.check(resp, BlobUnknown(str(digest)))
            limit = mirror.svc.settings.max_layer_bytes
            if limit and (resp.content_length or 0) > limit:
                raise UpstreamInvalid(name, f"blob larger than max_layer_bytes ({limit})")
            download.size = resp.content_length
            await download.notify()
            try:
                while chunk := await resp.content.read(_UPSTREAM_READ_BYTES):
                    await writer.write(chunk)
                    if (
                        not download.received
                        and lock is not None
                        and download.path is not None
                        and download.size is not None
                    ):
                        await _announce(lock, download)
                    download.received += len(chunk)
                    mirror.metrics.upstream_bytes.labels(name).inc(len(chunk))
                    if download.size is not None and download.received > download.size:
                        raise UpstreamInvalid(name, "blob longer than its Content-Length")
                    if limit and download.received > limit:
                        raise UpstreamInvalid(name, f"blob larger than max_layer_bytes ({limit})")
                    await download.notify()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise UpstreamUnavailable(
                    name, f"blob download cut after {download.received} bytes: {exc!r}"
                ) from None
            if download.size is not None and download.received != download.size:
                raise UpstreamInvalid(name, "blob shorter than its Content-Length")

        try:
            async with mirror.svc.pool.acquire() as conn, conn.transaction():
                # As every writer does (db/gc_holds.py): the blob's row exists and is held
                # before the file is placed, until the repository links it.
                await gc_holds.hold_blob(conn, digest, download.received)
                await writer.commit(digest)
                repo = await repository_queries.ensure_repository(conn, target.local)
                await gc_holds.link_blob(conn, repo.repository_id, digest)
        except DigestMismatch as exc:
            raise UpstreamInvalid(name, f"blob digest is {exc.actual}, not {digest}") from None
    download.size = download.received
    download.committed = True
    if target.upstream.cache_max_bytes is not None:
        mirror.eviction.kick()


async def _follow(request: web.Request, mirror: Mirror, download: Download) -> web.StreamResponse:
    """Answer one request from a download in flight, following the bytes as they land."""
    download.waiters += 1
    if (
        not mirror.svc.storage.follows_writes
        and not download.committed
        and "Range" not in request.headers
    ):
        return await _pass_through(request, mirror, download)
    await download.wait_for(lambda: download.size is not None or download.over)
    if download.error is not None and not download.received:
        _raise(download.error)
    target = download.target
    if download.committed or download.size is None or download.path is None:
        await download.wait_for(lambda: download.over)
        return await _after_download(request, mirror, download)
    size = download.size
    headers = {**_headers(download.digest), "Accept-Ranges": "bytes"}
    try:
        byte_range = parse_range(request.headers.get("Range"), size)
    except RangeNotSatisfiable:
        headers["Content-Range"] = f"bytes */{size}"
        return web.Response(status=416, headers=headers)
    start, end = (0, size - 1) if byte_range is None else (byte_range.start, byte_range.end)
    if byte_range is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    loop = asyncio.get_running_loop()
    # The temp file exists from the first byte on.
    await download.wait_for(lambda: download.received > 0 or download.over)
    try:
        fd = await loop.run_in_executor(None, os.open, download.path, os.O_RDONLY)
    except FileNotFoundError:
        # Committed (renamed) or discarded between our look and the open.
        await download.wait_for(lambda: download.over)
        return await _after_download(request, mirror, download)
    try:
        response = web.StreamResponse(status=200 if byte_range is None else 206, headers=headers)
        response.content_type = "application/octet-stream"
        response.content_length = end - start + 1 if size else 0
        writer = await response.prepare(request)
        if request.method == "HEAD" or not size:
            await response.write_eof()
            return response
        sock = sendfile.usable(request.transport) if mirror.svc.settings.sendfile else None
        if sock is not None and isinstance(writer, StreamWriter):
            writer.send_headers()  # sendfile bypasses aiohttp's buffered status and headers
        else:
            sock = None
        position = start
        while position <= end:
            await download.wait_past(position)
            available = min(download.received, end + 1) - position
            if available <= 0:
                # The download failed before our range arrived: the body cannot be
                # completed, so the connection is cut (the client retries afresh).
                _abort(request, target, download)
                return response
            if position + available == size and not download.committed:
                # The blob's last byte goes out only once its digest is verified and it
                # is committed: a client never completes a body with wrong bytes.
                if download.over:
                    _abort(request, target, download)
                    return response
                if available > 1:
                    available -= 1
                else:
                    await download.wait_for(lambda: download.over)
                    if not download.committed:
                        _abort(request, target, download)
                        return response
            try:
                if sock is not None:
                    # Everything that has arrived, straight from the file to the socket.
                    await sendfile.send_file_range(
                        request.transport,  # type: ignore[arg-type]  # checked by usable()
                        sock,
                        fd,
                        position,
                        available,
                    )
                    sent = available
                else:
                    data = await loop.run_in_executor(
                        None, os.pread, fd, min(available, READ_CHUNK_BYTES), position
                    )
                    if not data:
                        _abort(request, target, download)
                        return response
                    await response.write(data)
                    sent = len(data)
            except OSError:  # the client went away (ConnectionError), or the file is short
                _abort(request, target, download)
                return response
            position += sent
        await response.write_eof()
        return response
    finally:
        await loop.run_in_executor(None, os.close, fd)


async def _pass_through(
    request: web.Request, mirror: Mirror, download: Download
) -> web.StreamResponse:
    """Stream the blob from the upstream to this client while the download stores it.

    For a store whose writes cannot be followed (s3: the parts go to the bucket),
    so that no client waits for a whole download and its commit before its first
    byte (or times out on a large layer). This costs the upstream one more GET per
    client during the miss, as distribution's proxy does; the blob is stored once.
    The bytes are hashed on the way and the last one is sent only if they match
    the digest; otherwise the connection is cut. A Range waits for the commit.
    """
    target, digest = download.target, download.digest
    name = target.upstream.namespace
    client = mirror.client(target.upstream)
    limit = mirror.svc.settings.max_layer_bytes
    loop = asyncio.get_running_loop()
    async with client.request("GET", f"/v2/{target.path}/blobs/{digest}", target.path) as resp:
        client.check(resp, BlobUnknown(str(digest)))
        size = resp.content_length
        if size is None:
            resp.release()  # no length to promise the client: serve the stored copy
            await download.wait_for(lambda: download.over)
            return await _after_download(request, mirror, download)
        if limit and size > limit:
            raise UpstreamInvalid(name, f"blob larger than max_layer_bytes ({limit})")
        response = web.StreamResponse(
            status=200, headers={**_headers(digest), "Accept-Ranges": "bytes"}
        )
        response.content_type = "application/octet-stream"
        response.content_length = size
        await response.prepare(request)
        hasher = Hasher(digest.algorithm)
        received, last_byte = 0, b""
        try:
            while chunk := await resp.content.read(_UPSTREAM_READ_BYTES):
                await loop.run_in_executor(None, hasher.update, chunk)
                received += len(chunk)
                mirror.metrics.upstream_bytes.labels(name).inc(len(chunk))
                if received > size:
                    break
                if received == size:  # the last byte waits for the digest's verdict
                    chunk, last_byte = chunk[:-1], chunk[-1:]
                await response.write(chunk)
        except (aiohttp.ClientError, TimeoutError, OSError):
            _abort(request, target, download)
            return response
        if received != size or hasher.digest() != digest:
            _abort(request, target, download)
            return response
        await response.write(last_byte)
        await response.write_eof()
        return response


async def _after_download(
    request: web.Request, mirror: Mirror, download: Download
) -> web.StreamResponse:
    if not download.committed:
        _raise(download.error)
    held = await _open_stored(mirror, download.digest)
    if held is None:
        raise BlobUnknown(str(download.digest))
    return await send_blob(
        request, held, _headers(download.digest), zero_copy=mirror.svc.settings.sendfile
    )


def _raise(error: BaseException | None) -> None:
    if isinstance(error, UpstreamError | BlobUnknown):
        raise error
    raise UpstreamUnavailable("upstream", "the download was interrupted")


def _abort(request: web.Request, target: Target, download: Download) -> None:
    log.info(
        "mirrored blob body cut short",
        extra={
            "fields": {
                "upstream": target.upstream.namespace,
                "digest": str(download.digest),
                "received": download.received,
            }
        },
    )
    if request.transport is not None:
        request.transport.close()
