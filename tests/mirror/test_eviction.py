"""Cache eviction: ``cache_max_bytes`` drops the least recently pulled blobs first,
``cache_max_age_seconds`` what was not pulled for that long; evicted content is pulled
from the upstream again, and nothing a local repository holds is lost.

Pull times are real; to make minutes pass, a test shifts every timestamp of the
cache back by the same amount (their order, which LRU is about, is kept).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import asyncpg

from registryd.config import Upstream
from registryd.digest import Digest
from registryd.mirror.eviction import Evicted
from registryd.mirror.service import MIRROR, Mirror
from tests.conftest import Client
from tests.mirror.conftest import ADMIN, ADMIN_PASSWORD, NAMESPACE, StartMirror, UpstreamRegistry
from tests.mirror.proxy import Proxy
from tests.mirror.test_blobs import metric, stored_path
from tests.mirror.test_pull_through import ACCEPT, pull
from tests.support.content import sha256
from tests.support.v2client import V2Client

MIB = 1024 * 1024


def mirror_of(client: Client) -> Mirror:
    return client.app[MIRROR]


async def age_cache(client: Client, db: asyncpg.Connection, seconds: float) -> None:
    """Make everything cached so far look ``seconds`` older (pulls, links, manifests)."""
    await mirror_of(client).pulls.flush()
    shift = f"make_interval(secs => {float(seconds)})"
    await db.execute(f"UPDATE mirror_pulls SET last_pulled_at = last_pulled_at - {shift}")
    await db.execute(f"UPDATE v2_repository_blobs SET created_at = created_at - {shift}")
    await db.execute(f"UPDATE v2_manifests SET created_at = created_at - {shift}")


async def evict(client: Client) -> dict[str, Evicted]:
    """One eviction round (waiting out a round the server started itself)."""
    for _ in range(100):
        if (results := await mirror_of(client).eviction.run_once()) is not None:
            return results
        await asyncio.sleep(0.05)
    raise AssertionError("the eviction lock was never free")


async def cache_bytes(db: asyncpg.Connection) -> int:
    total: int = await db.fetchval(
        """
        SELECT COALESCE(sum(b.size_bytes), 0) FROM blobs b WHERE b.digest IN (
            SELECT l.digest FROM v2_repository_blobs l
            JOIN repositories r USING (repository_id) WHERE r.namespace = $1)
        """,
        NAMESPACE,
    )
    return total


def layer_of(manifest: bytes) -> str:
    digest: str = json.loads(manifest)["layers"][0]["digest"]
    return digest


async def test_a_cache_over_its_byte_budget_drops_the_least_recently_pulled(
    upstream: UpstreamRegistry,
    proxy: Proxy,
    start_mirror: StartMirror,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    cap = 2 * MIB + MIB // 2  # room for two of the four 1 MiB layers
    mirror = await start_mirror(
        Upstream(NAMESPACE, proxy.url, ADMIN, ADMIN_PASSWORD, cache_max_bytes=cap)
    )
    layers = {}
    for name in "abcd":
        manifest = await upstream.push(f"mirroradmin/{name}", "v1", [os.urandom(MIB)])
        layers[name] = layer_of(manifest)
        await pull(mirror, f"{NAMESPACE}/mirroradmin/{name}", "v1")
    assert await cache_bytes(db) > 4 * MIB

    # All of it was pulled a moment ago: in use, so nothing goes yet.
    await evict(mirror)
    assert await cache_bytes(db) > 4 * MIB
    assert all(stored_path(tmp_path, d).exists() for d in layers.values())

    await age_cache(mirror, db, 3600)
    # A node pulls a's manifest again (it has the layers): a counts as just used.
    resp = await mirror.get(f"/v2/{NAMESPACE}/mirroradmin/a/manifests/v1", headers=ACCEPT)
    assert resp.status == 200
    await age_cache(mirror, db, 60)
    await evict(mirror)

    assert await cache_bytes(db) <= cap
    # b and c were the least recently used: their layers and manifests are gone.
    for name in "bc":
        assert not stored_path(tmp_path, layers[name]).exists()
        tags = await mirror.get(f"/v2/{NAMESPACE}/mirroradmin/{name}/tags/list")
        assert (await tags.json())["tags"] == []
    for name in "ad":
        assert stored_path(tmp_path, layers[name]).exists()
    text = await (await mirror.get("/metrics")).text()
    assert metric(text, "registryd_mirror_evicted_bytes_total") >= 2 * MIB
    assert await db.fetchval("SELECT count(*) FROM blob_deletions") == 0

    # Pulled again: fetched from the upstream again, and complete.
    before = proxy.count("GET", f"/v2/mirroradmin/b/blobs/{layers['b']}")
    await pull(mirror, f"{NAMESPACE}/mirroradmin/b", "v1")
    assert proxy.count("GET", f"/v2/mirroradmin/b/blobs/{layers['b']}") == before + 1
    assert stored_path(tmp_path, layers["b"]).exists()


async def test_a_blob_a_local_repository_shares_survives_eviction(
    upstream: UpstreamRegistry,
    proxy: Proxy,
    start_mirror: StartMirror,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    mirror = await start_mirror(
        Upstream(NAMESPACE, proxy.url, ADMIN, ADMIN_PASSWORD, cache_max_bytes=1)
    )
    layer = os.urandom(MIB)
    manifest = await upstream.push("mirroradmin/base", "v1", [layer])
    await pull(mirror, f"{NAMESPACE}/mirroradmin/base", "v1")
    # Someone pushes an image with the same layer to a local repository of the mirror.
    local_manifest = await V2Client(mirror).push_image("alice/app", "v1", [layer])
    assert layer_of(local_manifest) == layer_of(manifest) == sha256(layer)

    await age_cache(mirror, db, 3600)
    await evict(mirror)
    assert await cache_bytes(db) == 0  # the mirror holds nothing any more...
    # ...but the local repository's layer is still stored and served.
    assert stored_path(tmp_path, sha256(layer)).read_bytes() == layer
    resp = await mirror.get(f"/v2/alice/app/blobs/{sha256(layer)}")
    assert resp.status == 200
    assert await resp.read() == layer
    resp = await mirror.get("/v2/alice/app/manifests/v1", headers=ACCEPT)
    assert resp.status == 200


async def test_content_not_pulled_for_max_age_is_evicted(
    upstream: UpstreamRegistry,
    proxy: Proxy,
    start_mirror: StartMirror,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    mirror = await start_mirror(
        Upstream(NAMESPACE, proxy.url, ADMIN, ADMIN_PASSWORD, cache_max_age_seconds=600)
    )
    old = layer_of(await upstream.push("mirroradmin/old", "v1", [os.urandom(MIB)]))
    await upstream.push("mirroradmin/peek", "v1", [os.urandom(1000)])
    await pull(mirror, f"{NAMESPACE}/mirroradmin/old", "v1")
    # Only the manifest of this one was ever asked for (no blob cached).
    resp = await mirror.get(f"/v2/{NAMESPACE}/mirroradmin/peek/manifests/v1", headers=ACCEPT)
    assert resp.status == 200
    await age_cache(mirror, db, 3600)
    fresh = layer_of(await upstream.push("mirroradmin/fresh", "v1", [os.urandom(MIB)]))
    await pull(mirror, f"{NAMESPACE}/mirroradmin/fresh", "v1")
    await age_cache(mirror, db, 60)  # an hour and a minute, and a minute
    await evict(mirror)

    assert not stored_path(tmp_path, old).exists()
    assert stored_path(tmp_path, fresh).exists()
    manifests = await db.fetch(
        "SELECT r.name FROM v2_manifests m JOIN repositories r USING (repository_id)"
    )
    assert [r["name"] for r in manifests] == ["mirroradmin/fresh"]
    text = await (await mirror.get("/metrics")).text()
    assert metric(text, "registryd_mirror_evicted_manifests_total") >= 1
    await pull(mirror, f"{NAMESPACE}/mirroradmin/old", "v1")  # fetched again
    assert stored_path(tmp_path, old).exists()


async def test_a_blob_being_sent_is_not_evicted(
    upstream: UpstreamRegistry,
    proxy: Proxy,
    start_mirror: StartMirror,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    mirror = await start_mirror(
        Upstream(NAMESPACE, proxy.url, ADMIN, ADMIN_PASSWORD, cache_max_bytes=1),
        sendfile=False,
    )
    layer = os.urandom(64 * MIB)  # more than the socket buffers hold
    await upstream.push("mirroradmin/big", "v1", [layer])
    digest = sha256(layer)
    path = f"/v2/{NAMESPACE}/mirroradmin/big/blobs/{digest}"
    assert (await (await mirror.get(path)).read()) == layer  # cached

    async with mirror.session.get(mirror.make_url(path)) as slow:
        first = await slow.content.readexactly(MIB)  # the rest waits in the handler
        await age_cache(mirror, db, 3600)
        assert mirror_of(mirror).pulls.in_use(Digest.parse(digest))
        results = await evict(mirror)
        assert results[NAMESPACE].blobs < 2  # the config may go; the layer may not
        assert stored_path(tmp_path, digest).exists()
        rest = await slow.read()
    assert first + rest == layer


async def test_a_download_into_a_full_cache_evicts_in_the_background(
    upstream: UpstreamRegistry,
    proxy: Proxy,
    start_mirror: StartMirror,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    """No one calls the eviction here: the server's own round, started by the download
    that went over the cap, evicts what was pulled longest ago (and not within seconds)."""
    mirror = await start_mirror(
        Upstream(NAMESPACE, proxy.url, ADMIN, ADMIN_PASSWORD, cache_max_bytes=MIB + MIB // 2)
    )
    old = layer_of(await upstream.push("mirroradmin/old", "v1", [os.urandom(MIB)]))
    new = layer_of(await upstream.push("mirroradmin/new", "v1", [os.urandom(MIB)]))
    await pull(mirror, f"{NAMESPACE}/mirroradmin/old", "v1")
    await asyncio.sleep(mirror_of(mirror).eviction.in_use_guard_seconds + 1)
    await pull(mirror, f"{NAMESPACE}/mirroradmin/new", "v1")
    for _ in range(100):
        if not stored_path(tmp_path, old).exists():
            break
        await asyncio.sleep(0.1)
    assert not stored_path(tmp_path, old).exists()
    assert stored_path(tmp_path, new).exists()
    assert await cache_bytes(db) <= MIB + MIB // 2


async def test_a_blob_being_downloaded_is_not_evicted(
    upstream: UpstreamRegistry,
    proxy: Proxy,
    start_mirror: StartMirror,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    mirror = await start_mirror(
        Upstream(NAMESPACE, proxy.url, ADMIN, ADMIN_PASSWORD, cache_max_bytes=1)
    )
    old = layer_of(await upstream.push("mirroradmin/old", "v1", [os.urandom(MIB)]))
    await pull(mirror, f"{NAMESPACE}/mirroradmin/old", "v1")
    layer = os.urandom(4 * MIB)
    await upstream.push("mirroradmin/new", "v1", [layer])
    await age_cache(mirror, db, 3600)
    proxy.chunk_delay_seconds = 0.05  # about 3 s for the new layer
    path = f"/v2/{NAMESPACE}/mirroradmin/new/blobs/{sha256(layer)}"
    # Its headers come once the download has begun.
    download = asyncio.create_task((await mirror.get(path)).read())
    await evict(mirror)  # the cache is over its cap while the layer downloads
    assert not stored_path(tmp_path, old).exists()
    assert not download.done()
    assert await download == layer
    assert stored_path(tmp_path, sha256(layer)).read_bytes() == layer
