"""When the upstream fails: cached content keeps being served, uncached requests fail fast
with a clear error, and a download cut by the upstream's death commits nothing."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from registryd.config import Upstream
from tests.conftest import Client
from tests.mirror.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    NAMESPACE,
    StartMirror,
    UpstreamRegistry,
)
from tests.mirror.proxy import Proxy
from tests.mirror.test_blobs import stored_path
from tests.mirror.test_pull_through import ACCEPT, pull
from tests.process.conftest import free_port
from tests.support.content import sha256
from tests.support.polling import eventually


async def error_of(resp: object) -> dict[str, object]:
    body = await resp.json()  # type: ignore[attr-defined]
    error: dict[str, object] = body["errors"][0]
    return error


async def test_upstream_stopped_cached_pulls_work_uncached_fail_fast(
    upstream: UpstreamRegistry,
    proxy: Proxy,
    start_mirror: StartMirror,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mirror = await start_mirror(
        Upstream(
            NAMESPACE,
            proxy.url,
            ADMIN,
            ADMIN_PASSWORD,
            tag_ttl_seconds=0.2,
            connect_timeout_seconds=2,
            read_timeout_seconds=2,
        )
    )
    name = f"{NAMESPACE}/mirroradmin/app"
    await upstream.push("mirroradmin/app", "v1", [b"cached layer"])
    await upstream.push("mirroradmin/other", "v1", [b"never pulled"])
    digest, _ = await pull(mirror, name, "v1")
    upstream.stop()
    await asyncio.sleep(0.3)  # past the tag's TTL

    # Cached: the stale tag is served (with a warning), its blobs from the store.
    with caplog.at_level(logging.WARNING, logger="registryd.mirror"):
        assert (await pull(mirror, name, "v1"))[0] == digest
        assert (await pull(mirror, "mirroradmin/app", "v1", f"?ns={NAMESPACE}"))[0] == digest
    assert any("stale tag" in r.getMessage() for r in caplog.records)

    # Uncached: a spec-format 503 at once, not a hang.
    for path in (
        f"/v2/{NAMESPACE}/mirroradmin/other/manifests/v1",
        f"/v2/{NAMESPACE}/mirroradmin/other/blobs/{sha256(b'never pulled')}",
    ):
        started = time.monotonic()
        resp = await mirror.get(path, headers=ACCEPT)
        assert resp.status == 503, await resp.text()
        assert time.monotonic() - started < 5
        error = await error_of(resp)
        assert error["code"] == "UNAVAILABLE"
        assert error["detail"] == {"upstream": NAMESPACE, "reason": error["detail"]["reason"]}  # type: ignore[index]

    text = await (await mirror.get("/metrics")).text()
    assert "registryd_mirror_stale_served_total" in text


async def test_unreachable_upstream_is_503(start_mirror: StartMirror) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    mirror = await start_mirror(Upstream(NAMESPACE, nowhere, connect_timeout_seconds=1))
    started = time.monotonic()
    resp = await mirror.get(f"/v2/{NAMESPACE}/a/b/manifests/v1")
    assert resp.status == 503
    assert (await error_of(resp))["code"] == "UNAVAILABLE"
    assert resp.headers["Retry-After"]
    assert time.monotonic() - started < 3


async def test_stalled_upstream_times_out(
    upstream: UpstreamRegistry, proxy: Proxy, start_mirror: StartMirror
) -> None:
    mirror = await start_mirror(
        Upstream(NAMESPACE, proxy.url, ADMIN, ADMIN_PASSWORD, read_timeout_seconds=1)
    )
    await upstream.push("mirroradmin/app", "v1", [b"x"])
    proxy.stall = True
    started = time.monotonic()
    resp = await mirror.get(f"/v2/{NAMESPACE}/mirroradmin/app/manifests/v1", headers=ACCEPT)
    assert resp.status == 503
    assert "timed out" in str((await error_of(resp))["detail"])
    assert time.monotonic() - started < 4


async def test_upstream_killed_mid_blob_commits_nothing_and_recovers(
    upstream: UpstreamRegistry,
    proxy: Proxy,
    mirror: Client,
    tmp_path: Path,
    db: asyncpg.Connection,
) -> None:
    # Larger than what loopback socket buffers hold, read slowly: the upstream is
    # still sending when it dies.
    layer = os.urandom(24 * 1024 * 1024)
    await upstream.push("mirroradmin/app", "v1", [layer])
    digest = sha256(layer)
    path = f"/v2/{NAMESPACE}/mirroradmin/app/blobs/{digest}"
    proxy.chunk_delay_seconds = 0.005  # ~2 s for the whole layer

    async def read_all() -> bytes | None:
        async with mirror.session.get(mirror.make_url(path)) as resp:
            assert resp.status == 200
            try:
                return await resp.read()
            except aiohttp.ClientPayloadError:
                return None

    client = asyncio.create_task(read_all())
    await proxy.blob_get_forwarded.wait()
    uploads = tmp_path / "mirror-data" / "storage" / "uploads"
    await eventually(
        lambda: any(f.stat().st_size > 0 for f in uploads.iterdir()),
        "some of it has arrived (most has not)",
    )
    upstream.kill()
    assert await client is None  # the body was cut: the client retries, never keeps it
    await eventually(lambda: list(uploads.iterdir()) == [], "the temp file is removed")
    assert not stored_path(tmp_path, digest).exists()
    assert await db.fetchval("SELECT count(*) FROM blobs WHERE digest = $1", digest) == 0

    resp = await mirror.get(path)  # upstream still down: nothing cached to fall back on
    assert resp.status == 503

    await asyncio.to_thread(upstream.restart)
    proxy.chunk_delay_seconds = 0
    resp = await mirror.get(path)
    assert resp.status == 200
    assert await resp.read() == layer
    assert stored_path(tmp_path, digest).read_bytes() == layer
