"""Several worker processes: a PostgreSQL advisory lock per digest keeps the upstream
fetch single across processes too, and the other processes stream the downloading
process's temp file as it grows rather than wait for the end."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import aiohttp
import asyncpg

from tests.mirror.conftest import NAMESPACE, UpstreamRegistry, upstreams_setting
from tests.mirror.proxy import Proxy
from tests.mirror.test_blobs import metric
from tests.process.conftest import Launcher
from tests.support.content import sha256


def listening_sockets(port: int) -> int:
    """How many sockets listen on 127.0.0.1:``port`` (one per worker, SO_REUSEPORT)."""
    table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    local = f"0100007F:{port:04X}"
    return sum(1 for line in table if line.split()[1] == local and line.split()[3] == "0A")


async def wait_for_workers(url: str, workers: int) -> None:
    """Until every worker listens: before that the kernel gives all connections to one."""
    port = int(url.rsplit(":", 1)[1])
    for _ in range(300):
        if await asyncio.to_thread(listening_sockets, port) >= workers:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {workers} workers listen on {port}")


async def test_two_workers_fetch_a_layer_once(
    upstream: UpstreamRegistry,
    proxy: Proxy,
    launcher: Launcher,
    database_url: str,
    tmp_path: Path,
) -> None:
    layer = os.urandom(24 * 1024 * 1024)
    await upstream.push("mirroradmin/big", "v1", [layer])
    digest = sha256(layer)
    upstreams = upstreams_setting(proxy)
    proxy.chunk_delay_seconds = 0.002  # long enough for both workers to be asked
    mirror = await asyncio.to_thread(
        launcher.start,
        tmp_path / "mirror-data",
        database_url,
        env={"REGISTRYD_UPSTREAMS": upstreams, "REGISTRYD_WORKERS": "2"},
    )
    path = f"{mirror.url}/v2/{NAMESPACE}/mirroradmin/big/blobs/{digest}"

    async def fetch() -> str:
        # A connection each, so the kernel spreads them over both workers.
        async with aiohttp.ClientSession() as http, http.get(path) as resp:
            assert resp.status == 200
            hasher = hashlib.sha256()
            async for chunk in resp.content.iter_chunked(256 * 1024):
                hasher.update(chunk)
            return "sha256:" + hasher.hexdigest()

    assert await asyncio.gather(*(fetch() for _ in range(16))) == [digest] * 16
    assert proxy.count("GET", f"/v2/mirroradmin/big/blobs/{digest}") == 1
    # Both workers' counters add up: the layer's bytes came from the upstream once.
    async with aiohttp.ClientSession() as http, http.get(f"{mirror.url}/metrics") as resp:
        text = await resp.text()
    assert metric(text, "registryd_mirror_upstream_bytes_total") == len(layer)
    assert metric(text, "registryd_mirror_misses_total") == 1


async def test_clients_of_another_worker_stream_a_download_as_it_grows(
    upstream: UpstreamRegistry,
    proxy: Proxy,
    launcher: Launcher,
    database_url: str,
    tmp_path: Path,
) -> None:
    layer = os.urandom(16 * 1024 * 1024)
    await upstream.push("mirroradmin/slow", "v1", [layer])
    digest = sha256(layer)
    upstreams = upstreams_setting(proxy)
    mirror = await asyncio.to_thread(
        launcher.start,
        tmp_path / "mirror-data",
        database_url,
        env={
            "REGISTRYD_UPSTREAMS": upstreams,
            "REGISTRYD_WORKERS": "2",
            "REGISTRYD_LOG_FORMAT": "json",
            "REGISTRYD_LOG_LEVEL": "info",
        },
    )
    await wait_for_workers(mirror.url, 2)
    proxy.chunk_delay_seconds = 0.01  # 256 chunks of 64 KiB: about 3 s upstream
    path = f"{mirror.url}/v2/{NAMESPACE}/mirroradmin/slow/blobs/{digest}"
    loop = asyncio.get_running_loop()

    async def fetch() -> tuple[str, float]:
        """The digest of what arrived, and when its first body bytes did."""
        # A connection each, so the kernel spreads them over both workers.
        async with aiohttp.ClientSession() as http, http.get(path) as resp:
            assert resp.status == 200
            assert resp.content_length == len(layer)
            hasher = hashlib.sha256()
            first_at = None
            async for chunk in resp.content.iter_chunked(64 * 1024):
                first_at = first_at or loop.time()
                hasher.update(chunk)
            assert first_at is not None
            return "sha256:" + hasher.hexdigest(), first_at

    results = await asyncio.gather(*(fetch() for _ in range(16)))
    assert [d for d, _ in results] == [digest] * 16
    assert proxy.count("GET", f"/v2/mirroradmin/slow/blobs/{digest}") == 1
    # Every client had bytes well before the upstream had sent the whole blob.
    finished = proxy.blob_get_finished_at
    assert finished is not None
    assert max(at for _, at in results) < finished - 1.0
    # And the other worker did follow the download rather than fetch or wait.
    log = await asyncio.to_thread(mirror.log)
    assert "following a download of another process" in log
    async with aiohttp.ClientSession() as http, http.get(f"{mirror.url}/metrics") as resp:
        text = await resp.text()
    assert metric(text, "registryd_mirror_upstream_bytes_total") == len(layer)


async def test_a_download_cut_upstream_fails_the_followers_of_every_worker(
    upstream: UpstreamRegistry,
    proxy: Proxy,
    launcher: Launcher,
    database_url: str,
    tmp_path: Path,
) -> None:
    layer = os.urandom(16 * 1024 * 1024)
    await upstream.push("mirroradmin/cut", "v1", [layer])
    digest = sha256(layer)
    upstreams = upstreams_setting(proxy)
    mirror = await asyncio.to_thread(
        launcher.start,
        tmp_path / "mirror-data",
        database_url,
        env={"REGISTRYD_UPSTREAMS": upstreams, "REGISTRYD_WORKERS": "2"},
    )
    proxy.chunk_delay_seconds = 0.005
    proxy.cut_blobs_after = 8 * 1024 * 1024  # the upstream "dies" half-way
    path = f"{mirror.url}/v2/{NAMESPACE}/mirroradmin/cut/blobs/{digest}"

    async def fetch() -> str | None:
        """The digest of a complete body, or None when the answer failed or was cut."""
        async with aiohttp.ClientSession() as http:
            try:
                async with http.get(path) as resp:
                    if resp.status != 200:
                        assert resp.status in (502, 503), resp.status
                        return None
                    return sha256(await resp.read())
            except aiohttp.ClientPayloadError:
                return None

    # Nobody gets a complete body of unverified bytes, in either worker.
    assert await asyncio.gather(*(fetch() for _ in range(16))) == [None] * 16
    assert proxy.count("GET", f"/v2/mirroradmin/cut/blobs/{digest}") == 1
    db = await asyncpg.connect(database_url)
    try:
        assert await db.fetchval("SELECT count(*) FROM blobs WHERE digest = $1", digest) == 0
        assert await db.fetchval("SELECT count(*) FROM mirror_downloads") == 0
    finally:
        await db.close()

    proxy.cut_blobs_after = None
    assert await asyncio.gather(*(fetch() for _ in range(4))) == [digest] * 4
