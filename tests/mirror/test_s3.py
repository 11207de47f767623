"""The pull-through cache on the s3 store (moto's server), with two worker processes.

Nothing local grows while a download fills the bucket, so no request can follow
it: each client streams from the upstream itself (its last byte only once the
digest is verified) while one download stores the blob, instead of waiting for
the whole download and its commit before its first byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from tests.clients.test_s3 import s3_env
from tests.mirror.conftest import NAMESPACE, UpstreamRegistry, upstreams_setting
from tests.mirror.proxy import Proxy
from tests.mirror.test_workers import wait_for_workers
from tests.process.conftest import Launcher, ServerProcess
from tests.support.content import sha256
from tests.support.polling import eventually
from tests.support.s3_server import S3Server

CLIENTS = 8


@pytest.fixture
async def s3_mirror(
    launcher: Launcher,
    tmp_path: Path,
    database_url: str,
    proxy: Proxy,
    s3_server: S3Server,
    s3_bucket: str,
) -> ServerProcess:
    """``serve --workers 2`` on the bucket, mirroring the upstream through the proxy."""
    upstreams = upstreams_setting(proxy)
    env = {
        **s3_env(s3_server, s3_bucket, redirect=False),
        "REGISTRYD_UPSTREAMS": upstreams,
        "REGISTRYD_WORKERS": "2",
    }
    mirror = await asyncio.to_thread(
        launcher.start, tmp_path / "mirror-data", database_url, env=env
    )
    await wait_for_workers(mirror.url, 2)
    return mirror


async def _fetch(url: str) -> tuple[str | None, float | None, int]:
    """The digest of a complete body (None if it was cut), when its first bytes came,
    and how many arrived."""
    loop = asyncio.get_running_loop()
    hasher, first_at, received = hashlib.sha256(), None, 0
    # A connection each, so the kernel spreads them over both workers.
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        try:
            async for chunk in resp.content.iter_chunked(64 * 1024):
                first_at = first_at or loop.time()
                hasher.update(chunk)
                received += len(chunk)
        except aiohttp.ClientPayloadError:
            return None, first_at, received
    return "sha256:" + hasher.hexdigest(), first_at, received


async def _in_bucket(server: S3Server, bucket: str, digest: str) -> bool:
    """Whether an object of the bucket is named by the digest (moto lists unsigned)."""

    def listing() -> str:
        with urllib.request.urlopen(f"{server.url}/{bucket}?list-type=2", timeout=5) as resp:
            return str(resp.read().decode())

    return digest.split(":")[1] in await asyncio.to_thread(listing)


async def test_clients_stream_from_the_upstream_while_the_bucket_fills(
    upstream: UpstreamRegistry,
    proxy: Proxy,
    s3_mirror: ServerProcess,
    tmp_path: Path,
    s3_server: S3Server,
    s3_bucket: str,
) -> None:
    layer = os.urandom(8 * 1024 * 1024)
    await upstream.push("mirroradmin/slow", "v1", [layer])
    digest = sha256(layer)
    mirror = s3_mirror
    proxy.chunk_delay_seconds = 0.02  # 128 chunks of 64 KiB: about 2.5 s upstream
    url = f"{mirror.url}/v2/{NAMESPACE}/mirroradmin/slow/blobs/{digest}"
    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(*(_fetch(url) for _ in range(CLIENTS)))
    assert [d for d, _, _ in results] == [digest] * CLIENTS
    # Nobody waited for a whole download and its commit: first bytes came early.
    firsts = [at for _, at, _ in results]
    assert all(at is not None and at - started < 1.5 for at in firsts), firsts
    blob_path = f"/v2/mirroradmin/slow/blobs/{digest}"
    fetched = proxy.count("GET", blob_path)
    assert 2 <= fetched <= CLIENTS + 2  # the clients' streams and the stored download
    # Stored once, in the bucket: once both workers know, pulls ask the upstream for nothing.
    await eventually(lambda: _in_bucket(s3_server, s3_bucket, digest), "the blob is stored")
    proxy.chunk_delay_seconds = 0.0

    async def served_from_the_bucket() -> bool:
        before = proxy.count("GET", blob_path)
        results = await asyncio.gather(*(_fetch(url) for _ in range(4)))
        assert [d for d, _, _ in results] == [digest] * 4
        return proxy.count("GET", blob_path) == before

    await eventually(served_from_the_bucket, "pulls are served from the bucket")
    assert not list((tmp_path / "mirror-data" / "storage" / "blobs").rglob("*"))


async def test_a_damaged_upstream_body_is_never_completed(
    upstream: UpstreamRegistry, proxy: Proxy, s3_mirror: ServerProcess
) -> None:
    layer = os.urandom(2 * 1024 * 1024)
    await upstream.push("mirroradmin/bad", "v1", [layer])
    digest = sha256(layer)
    mirror = s3_mirror
    proxy.corrupt_blobs = True
    url = f"{mirror.url}/v2/{NAMESPACE}/mirroradmin/bad/blobs/{digest}"
    results = await asyncio.gather(*(_fetch(url) for _ in range(4)))
    # Every body stops short of its last byte: no client holds wrong bytes as complete.
    assert all(d is None and n < len(layer) for d, _, n in results), results
    # Nothing was stored: once the upstream is sound, the blob comes (and verifies).
    proxy.corrupt_blobs = False
    assert (await _fetch(url))[0] == digest
