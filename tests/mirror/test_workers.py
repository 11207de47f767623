"""Several worker processes: a PostgreSQL advisory lock per digest keeps the upstream
fetch single across processes too (the others wait, then serve the stored blob)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import aiohttp

from tests.mirror.conftest import ADMIN, ADMIN_PASSWORD, NAMESPACE, UpstreamRegistry
from tests.mirror.proxy import Proxy
from tests.mirror.test_blobs import metric
from tests.process.conftest import Launcher
from tests.support.content import sha256


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
    upstreams = (
        f'[{{namespace = "{NAMESPACE}", url = "{proxy.url}", '
        f'username = "{ADMIN}", password = "{ADMIN_PASSWORD}"}}]'
    )
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
