"""Faults of the s3 backend, against real ``registryd serve`` processes and moto's server.

- The S3 endpoint stops mid-upload: a clean 503 with a spec error code, nothing
  committed, /readyz 503 while it is down, and the push succeeds once it is back.
- A digest mismatch leaves nothing at the content address (and no temp object).
- ``kill -9`` mid-upload leaves a multipart upload behind: the next start aborts it.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from registryd.digest import Digest
from registryd.storage.s3 import S3Backend
from tests.clients.test_s3 import s3_env
from tests.process.conftest import Launcher, ServerProcess
from tests.support.polling import eventually
from tests.support.s3_server import S3Server

MIB = 1024 * 1024


@pytest.fixture
def own_s3_server(s3_server: S3Server) -> Iterator[S3Server]:
    """A moto server of this test's own, which it may stop and start (the shared one
    stays up: ``s3_server`` only puts the credentials in the environment)."""
    server = S3Server()
    server.start()
    yield server
    server.stop()


async def _observer(server: S3Server, bucket: str) -> S3Backend:
    backend = S3Backend(bucket, endpoint_url=server.url, path_style=True)
    await backend.start()
    return backend


async def _multipart_uploads(backend: S3Backend) -> list[str]:
    return [f.name for f in await backend.temp_files() if f.partial]


async def _has_multipart_upload(backend: S3Backend) -> bool:
    return bool(await _multipart_uploads(backend))


async def _readyz(server: ServerProcess) -> int:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/readyz") as resp:
        return resp.status


async def _start_upload(http: aiohttp.ClientSession, server: ServerProcess) -> str:
    async with http.post(f"{server.url}/v2/alice/app/blobs/uploads/") as resp:
        assert resp.status == 202
        return resp.headers["Location"]


async def test_s3_stopped_mid_upload_is_a_clean_503_and_a_retry_succeeds(
    launcher: Launcher,
    tmp_path: Path,
    database_url: str,
    own_s3_server: S3Server,
    db: asyncpg.Connection,
) -> None:
    own_s3_server.create_bucket("faults")
    server = launcher.start(
        tmp_path / "data", database_url, env=s3_env(own_s3_server, "faults", redirect=False)
    )
    observer = await _observer(own_s3_server, "faults")
    data = b"s" * (6 * MIB + MIB // 2)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    stopped = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        # A full part goes out once bytes past it arrive (the server takes them in
        # 1 MiB pieces): the sixth MiB sends the first 5 MiB part.
        yield data[: 6 * MIB]
        # The first part is in the bucket: now the endpoint goes away.
        await eventually(lambda: _has_multipart_upload(observer), "a multipart upload")
        own_s3_server.stop()
        stopped.set()
        yield data[5 * MIB :]

    try:
        async with aiohttp.ClientSession() as http:
            location = await _start_upload(http, server)
            async with http.patch(
                server.url + location,
                data=body(),
                headers={"Content-Type": "application/octet-stream"},
            ) as resp:
                assert stopped.is_set()
                assert resp.status == 503
                assert (await resp.json())["errors"][0]["code"] == "UNAVAILABLE"
                assert "Retry-After" in resp.headers
            assert await _readyz(server) == 503
            # Nothing was committed: the session is where it was, and no blob exists.
            assert await db.fetchval("SELECT size_bytes FROM v2_uploads") == 0
            assert await db.fetchval("SELECT count(*) FROM blobs") == 0

            # The endpoint comes back (moto keeps nothing in memory across a restart,
            # so the bucket is made again); the client starts its push over.
            own_s3_server.start()
            own_s3_server.create_bucket("faults")
            await eventually(lambda: _readyz_is(server, 200), "/readyz 200 again")
            location = await _start_upload(http, server)
            async with http.put(
                server.url + location, params={"digest": digest}, data=io.BytesIO(data)
            ) as done:
                assert done.status == 201, await done.text()
            async with http.get(f"{server.url}/v2/alice/app/blobs/{digest}") as got:
                assert await got.read() == data
    finally:
        await observer.close()


async def _readyz_is(server: ServerProcess, status: int) -> bool:
    return await _readyz(server) == status


async def test_digest_mismatch_leaves_nothing_at_the_content_address(
    launcher: Launcher, tmp_path: Path, database_url: str, s3_server: S3Server, s3_bucket: str
) -> None:
    server = launcher.start(
        tmp_path / "data", database_url, env=s3_env(s3_server, s3_bucket, redirect=True)
    )
    data = b"m" * (5 * MIB + 1)
    claimed = Digest.sha256_of(b"something else")
    async with aiohttp.ClientSession() as http:
        location = await _start_upload(http, server)
        async with http.put(
            server.url + location, params={"digest": str(claimed)}, data=io.BytesIO(data)
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["errors"][0]["code"] == "DIGEST_INVALID"
    observer = await _observer(s3_server, s3_bucket)
    try:
        assert await observer.stat(claimed) is None
        assert await observer.stat(Digest.sha256_of(data)) is None
        assert [d async for d in observer.list_blobs()] == []
        assert await observer.temp_files() == []  # the session went with its bytes
    finally:
        await observer.close()


async def test_kill_9_mid_upload_the_next_start_aborts_the_multipart_upload(
    launcher: Launcher, tmp_path: Path, database_url: str, s3_server: S3Server, s3_bucket: str
) -> None:
    env = s3_env(s3_server, s3_bucket, redirect=True)
    server = launcher.start(tmp_path / "a", database_url, env=env)
    observer = await _observer(s3_server, s3_bucket)
    killed = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"k" * (6 * MIB)  # the sixth MiB sends the first 5 MiB part
        await eventually(lambda: _has_multipart_upload(observer), "a multipart upload")
        server.stop(9)
        killed.set()
        yield b"never arrives"

    try:
        async with aiohttp.ClientSession() as http:
            location = await _start_upload(http, server)
            with pytest.raises(aiohttp.ClientError):
                async with http.patch(server.url + location, data=body()) as resp:
                    await resp.read()
            assert killed.is_set()
            orphans = await _multipart_uploads(observer)
            assert len(orphans) == 1

            # The next start (here: another replica) sweeps it before serving.
            again = launcher.start(tmp_path / "b", database_url, env=env)
            assert await _multipart_uploads(observer) == []
            # And the session resumes at once on the new server.
            async with http.patch(again.url + location, data=b"resumed") as resp:
                assert resp.status == 202
                assert resp.headers["Range"] == "0-6"
    finally:
        await observer.close()


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.slow
async def test_concurrent_pushes_and_proxied_pulls_stay_within_the_memory_bound(
    launcher: Launcher, tmp_path: Path, database_url: str, s3_server: S3Server, s3_bucket: str
) -> None:
    """Peak RSS stays below 150 MiB + concurrent uploads x s3_part_bytes."""
    uploads, size, part_mib = 4, 48 * MIB, 8
    env = {**s3_env(s3_server, s3_bucket, redirect=False), "REGISTRYD_S3_PART_BYTES": "8MiB"}
    server = launcher.start(tmp_path / "data", database_url, env=env)
    block = bytes(range(256)) * 4096  # 1 MiB

    def blob(n: int) -> tuple[str, AsyncIterator[bytes]]:
        data_hash = hashlib.sha256()
        for i in range(size // MIB):
            data_hash.update(bytes([n, i % 251]) + block[2:])

        async def body() -> AsyncIterator[bytes]:
            for i in range(size // MIB):
                yield bytes([n, i % 251]) + block[2:]

        return "sha256:" + data_hash.hexdigest(), body()

    async def push(http: aiohttp.ClientSession, n: int) -> str:
        digest, body = blob(n)
        async with http.post(
            f"{server.url}/v2/alice/big/blobs/uploads/", params={"digest": digest}, data=body
        ) as resp:
            assert resp.status == 201, await resp.text()
        return digest

    async def pull(http: aiohttp.ClientSession, digest: str) -> None:
        pulled = hashlib.sha256()
        async with http.get(f"{server.url}/v2/alice/big/blobs/{digest}") as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_chunked(MIB):
                pulled.update(chunk)
        assert "sha256:" + pulled.hexdigest() == digest

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        digests = await asyncio.gather(*(push(http, n) for n in range(uploads)))
        rss_push = _peak_rss_kib(server.pid)
        await asyncio.gather(*(pull(http, d) for d in digests))
    rss_pull = _peak_rss_kib(server.pid)
    print(
        f"\nserver peak RSS on s3: after {uploads} x {size // MIB} MiB pushes "
        f"{rss_push / 1024:.1f} MiB, after proxied pulls {rss_pull / 1024:.1f} MiB"
    )
    assert rss_pull < (150 + uploads * part_mib) * 1024
