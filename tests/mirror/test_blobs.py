"""Mirrored blobs: one upstream GET however many clients ask, ranges while downloading,
interrupted downloads leave nothing, and a digest alone opens no other repository's blob."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from registryd.config import Upstream
from registryd.ops.logs import fields_of
from tests.conftest import Client
from tests.mirror.conftest import ADMIN, ADMIN_PASSWORD, NAMESPACE, StartMirror, UpstreamRegistry
from tests.mirror.proxy import Proxy
from tests.support.content import sha256
from tests.support.polling import eventually

# The figure: sixteen nodes pulling one 100 MiB layer.
LAYER_BYTES = 100 * 1024 * 1024


def stored_path(tmp_path: Path, digest: str) -> Path:
    hex_ = digest.split(":", 1)[1]
    return tmp_path / "mirror-data" / "storage" / "blobs" / "sha256" / hex_[:2] / hex_


def metric(text: str, name: str) -> float:
    return sum(
        float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    )


@pytest.mark.slow
async def test_sixteen_cold_pulls_of_one_layer_cost_one_upstream_get(
    upstream: UpstreamRegistry,
    proxy: Proxy,
    mirror: Client,
    tmp_path: Path,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = os.urandom(LAYER_BYTES)
    await upstream.push("mirroradmin/big", "v1", [layer])
    digest = sha256(layer)
    path = f"/v2/{NAMESPACE}/mirroradmin/big/blobs/{digest}"

    async def fetch() -> str:
        hasher = hashlib.sha256()
        async with mirror.session.get(mirror.make_url(path)) as resp:
            assert resp.status == 200
            assert resp.content_length == LAYER_BYTES
            async for chunk in resp.content.iter_chunked(256 * 1024):
                hasher.update(chunk)
        return "sha256:" + hasher.hexdigest()

    with caplog.at_level(logging.INFO, logger="registryd.mirror"):
        results = await asyncio.gather(*(fetch() for _ in range(16)))
    assert results == [digest] * 16
    # One log line per upstream fetch, with what it fetched.
    fetches = [r for r in caplog.records if r.getMessage() == "upstream fetch"]
    assert [fields_of(r)["digest"] for r in fetches] == [digest]
    assert fields_of(fetches[0])["bytes"] == LAYER_BYTES
    assert proxy.count("GET", f"/v2/mirroradmin/big/blobs/{digest}") == 1
    assert stored_path(tmp_path, digest).read_bytes() == layer
    assert await db.fetchval("SELECT size_bytes FROM blobs WHERE digest = $1", digest) == len(layer)

    text = await (await mirror.get("/metrics")).text()
    assert metric(text, "registryd_mirror_upstream_bytes_total") == LAYER_BYTES
    assert metric(text, "registryd_mirror_misses_total") >= 1
    # Those that came while it downloaded followed it; any later ones were cache hits.
    assert (
        metric(text, "registryd_mirror_coalesced_waiters_total")
        + metric(text, "registryd_mirror_hits_total")
        >= 15
    )

    # Warm: served from the store, no upstream request.
    assert await fetch() == digest
    assert proxy.count("GET", f"/v2/mirroradmin/big/blobs/{digest}") == 1


@pytest.mark.parametrize("zero_copy", [True, False], ids=["sendfile", "copy"])
async def test_range_of_a_blob_still_downloading(
    upstream: UpstreamRegistry, proxy: Proxy, start_mirror: StartMirror, zero_copy: bool
) -> None:
    mirror = await start_mirror(
        Upstream(NAMESPACE, proxy.url, ADMIN, ADMIN_PASSWORD, read_timeout_seconds=5),
        sendfile=zero_copy,
    )
    layer = os.urandom(4 * 1024 * 1024)
    await upstream.push("mirroradmin/slow", "v1", [layer])
    digest = sha256(layer)
    path = f"/v2/{NAMESPACE}/mirroradmin/slow/blobs/{digest}"
    proxy.chunk_delay_seconds = 0.02  # ~1.3 s for the whole blob

    async def read_all() -> bytes:
        async with mirror.session.get(mirror.make_url(path)) as resp:
            assert resp.status == 200
            return await resp.read()

    full = asyncio.create_task(read_all())
    upstream_path = f"/v2/mirroradmin/slow/blobs/{digest}"
    await eventually(lambda: proxy.count("GET", upstream_path) == 1, "the download starts")
    ranged = await mirror.get(path, headers={"Range": "bytes=1000-1999"})
    assert ranged.status == 206
    assert ranged.headers["Content-Range"] == f"bytes 1000-1999/{len(layer)}"
    assert await ranged.read() == layer[1000:2000]
    assert not full.done()  # answered while the download was still running

    tail = await mirror.get(path, headers={"Range": "bytes=-100"})
    assert tail.status == 206
    assert await tail.read() == layer[-100:]
    assert await full == layer
    assert proxy.count("GET", f"/v2/mirroradmin/slow/blobs/{digest}") == 1

    beyond = await mirror.get(path, headers={"Range": f"bytes={len(layer)}-"})
    assert beyond.status == 416


async def test_head_of_an_uncached_blob_downloads_nothing(
    upstream: UpstreamRegistry, proxy: Proxy, mirror: Client
) -> None:
    layer = os.urandom(100_000)
    await upstream.push("mirroradmin/app", "v1", [layer])
    digest = sha256(layer)
    resp = await mirror.head(f"/v2/{NAMESPACE}/mirroradmin/app/blobs/{digest}")
    assert resp.status == 200
    assert resp.content_length == len(layer)
    assert proxy.count("GET", f"/v2/mirroradmin/app/blobs/{digest}") == 0


async def test_interrupted_download_commits_nothing_and_the_next_starts_over(
    upstream: UpstreamRegistry,
    proxy: Proxy,
    mirror: Client,
    tmp_path: Path,
    db: asyncpg.Connection,
) -> None:
    layer = os.urandom(8 * 1024 * 1024)
    await upstream.push("mirroradmin/app", "v1", [layer])
    digest = sha256(layer)
    path = f"/v2/{NAMESPACE}/mirroradmin/app/blobs/{digest}"
    proxy.cut_blobs_after = 3 * 1024 * 1024

    resp = await mirror.get(path)
    assert resp.status == 200  # the headers went out before the upstream died
    try:
        body = await resp.read()
    except aiohttp.ClientPayloadError:
        body = b""
    assert body != layer  # cut short: the client sees a broken body, never a wrong one
    uploads = tmp_path / "mirror-data" / "storage" / "uploads"
    await eventually(lambda: list(uploads.iterdir()) == [], "the temp file is removed")
    assert not stored_path(tmp_path, digest).exists()
    assert await db.fetchval("SELECT count(*) FROM blobs WHERE digest = $1", digest) == 0

    proxy.cut_blobs_after = None
    resp = await mirror.get(path)
    assert resp.status == 200
    assert await resp.read() == layer
    assert proxy.count("GET", f"/v2/mirroradmin/app/blobs/{digest}") == 2
    assert stored_path(tmp_path, digest).read_bytes() == layer


async def test_a_digest_alone_opens_no_other_repositorys_blob(
    upstream: UpstreamRegistry, proxy: Proxy, mirror: Client
) -> None:
    secret = os.urandom(50_000)
    await upstream.push("mirroradmin/a", "v1", [secret])
    await upstream.push("mirroradmin/b", "v1", [b"other"])
    digest = sha256(secret)
    resp = await mirror.get(f"/v2/{NAMESPACE}/mirroradmin/a/blobs/{digest}")
    assert await resp.read() == secret  # cached through repository a

    # b does not hold it upstream: the cached bytes are not handed out under b's name.
    resp = await mirror.get(f"/v2/{NAMESPACE}/mirroradmin/b/blobs/{digest}")
    assert resp.status == 404
    assert proxy.count("HEAD", f"/v2/mirroradmin/b/blobs/{digest}") == 1

    # c holds the same bytes upstream: confirmed with a HEAD, served from the cache.
    await upstream.push("mirroradmin/c", "v1", [secret])
    resp = await mirror.get(f"/v2/{NAMESPACE}/mirroradmin/c/blobs/{digest}")
    assert await resp.read() == secret
    assert proxy.count("GET", f"/v2/mirroradmin/c/blobs/{digest}") == 0


async def test_blobs_above_max_layer_bytes_are_refused_and_not_stored(
    upstream: UpstreamRegistry, proxy: Proxy, start_mirror: StartMirror, tmp_path: Path
) -> None:
    mirror = await start_mirror(
        Upstream(NAMESPACE, proxy.url, ADMIN, ADMIN_PASSWORD), max_layer_bytes=1024 * 1024
    )
    layer = os.urandom(2 * 1024 * 1024)
    await upstream.push("mirroradmin/app", "v1", [layer])
    digest = sha256(layer)
    resp = await mirror.get(f"/v2/{NAMESPACE}/mirroradmin/app/blobs/{digest}")
    assert resp.status == 502
    error = (await resp.json())["errors"][0]
    assert "max_layer_bytes" in error["detail"]["reason"]
    assert not stored_path(tmp_path, digest).exists()
