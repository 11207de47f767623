"""Pulls through the mirror: both spellings of a mirrored name, the tag TTL, immutable digests."""

from __future__ import annotations

import asyncio
import json

from registryd.config import Upstream
from tests.conftest import Client
from tests.mirror.conftest import ADMIN, ADMIN_PASSWORD, NAMESPACE, StartMirror, UpstreamRegistry
from tests.mirror.proxy import Proxy
from tests.support.content import sha256
from tests.support.v2client import OCI_INDEX, OCI_MANIFEST, V2Client

ACCEPT = {"Accept": OCI_MANIFEST}


async def pull(mirror: Client, name: str, reference: str, query: str = "") -> tuple[str, bytes]:
    """GET the manifest and every blob it names; check each digest; return the manifest's."""
    resp = await mirror.get(f"/v2/{name}/manifests/{reference}{query}", headers=ACCEPT)
    body = await resp.read()
    assert resp.status == 200, body
    digest = resp.headers["Docker-Content-Digest"]
    assert digest == sha256(body)
    manifest = json.loads(body)
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blob = await mirror.get(f"/v2/{name}/blobs/{descriptor['digest']}{query}")
        data = await blob.read()
        assert blob.status == 200, data
        assert sha256(data) == descriptor["digest"]
    return digest, body


async def test_pull_by_prefix_and_by_ns_share_one_cached_repository(
    upstream: UpstreamRegistry, proxy: Proxy, mirror: Client
) -> None:
    manifest = await upstream.push("mirroradmin/app", "v1", [b"layer one" * 1000])
    digest, body = await pull(mirror, f"{NAMESPACE}/mirroradmin/app", "v1")
    assert body == manifest  # byte-exact
    fetched = proxy.count("GET", "/v2/mirroradmin/app/manifests/v1")
    assert fetched == 1

    # containerd's mirror protocol names the upstream path and the namespace apart.
    again, _ = await pull(mirror, "mirroradmin/app", "v1", f"?ns={NAMESPACE}")
    assert again == digest
    assert proxy.count("GET", "/v2/mirroradmin/app/manifests/v1") == 1  # from the cache
    assert proxy.count_prefix("GET", "/v2/mirroradmin/app/blobs/") == 2  # config + layer, once

    # The cached repository is an ordinary one: its tags list shows the tag.
    tags = await mirror.get(f"/v2/{NAMESPACE}/mirroradmin/app/tags/list")
    assert (await tags.json())["tags"] == ["v1"]


async def test_unknown_ns_is_a_local_name(mirror: Client) -> None:
    resp = await mirror.get("/v2/alice/app/manifests/v1?ns=elsewhere.example")
    assert resp.status == 404
    assert (await resp.json())["errors"][0]["code"] == "MANIFEST_UNKNOWN"


async def test_docker_hub_one_segment_names_map_to_library(
    upstream: UpstreamRegistry, proxy: Proxy, start_mirror: StartMirror
) -> None:
    await upstream.push("library/alpine", "3.20", [b"alpine layer"])
    mirror = await start_mirror(
        Upstream("hub.test", proxy.url, ADMIN, ADMIN_PASSWORD, library_prefix=True)
    )
    first, _ = await pull(mirror, "hub.test/alpine", "3.20")
    assert proxy.count("GET", "/v2/library/alpine/manifests/3.20") == 1
    second, _ = await pull(mirror, "hub.test/library/alpine", "3.20")
    third, _ = await pull(mirror, "alpine", "3.20", "?ns=hub.test")
    assert first == second == third
    assert proxy.count("GET", "/v2/library/alpine/manifests/3.20") == 1  # one repository


async def test_tag_revalidated_after_ttl_only(
    upstream: UpstreamRegistry, proxy: Proxy, start_mirror: StartMirror
) -> None:
    mirror = await start_mirror(
        Upstream(NAMESPACE, proxy.url, ADMIN, ADMIN_PASSWORD, tag_ttl_seconds=3)
    )
    name = f"{NAMESPACE}/mirroradmin/app"
    old_manifest = await upstream.push("mirroradmin/app", "v1", [b"old"])
    old, _ = await pull(mirror, name, "v1")
    assert old == sha256(old_manifest)
    new_manifest = await upstream.push("mirroradmin/app", "v1", [b"new"])
    before = dict(proxy.requests)

    # Before the TTL: the cached digest, and no upstream request at all.
    assert (await pull(mirror, name, "v1"))[0] == old
    assert dict(proxy.requests) == before

    await asyncio.sleep(3.1)
    assert (await pull(mirror, name, "v1"))[0] == sha256(new_manifest)
    assert proxy.count("HEAD", "/v2/mirroradmin/app/manifests/v1") == 1
    assert proxy.count("GET", "/v2/mirroradmin/app/manifests/v1") == 2

    # Past the TTL again, unchanged upstream: a HEAD confirms it, no GET.
    await asyncio.sleep(3.1)
    assert (await pull(mirror, name, "v1"))[0] == sha256(new_manifest)
    assert proxy.count("HEAD", "/v2/mirroradmin/app/manifests/v1") == 2
    assert proxy.count("GET", "/v2/mirroradmin/app/manifests/v1") == 2


async def test_by_digest_fetched_once_then_immutable(
    upstream: UpstreamRegistry, proxy: Proxy, start_mirror: StartMirror
) -> None:
    mirror = await start_mirror(
        Upstream(NAMESPACE, proxy.url, ADMIN, ADMIN_PASSWORD, tag_ttl_seconds=0.001)
    )
    manifest = await upstream.push("mirroradmin/app", "v1", [b"pinned"])
    digest = sha256(manifest)
    name = f"{NAMESPACE}/mirroradmin/app"
    for _ in range(3):
        assert (await pull(mirror, name, digest))[0] == digest
    assert proxy.count("GET", f"/v2/mirroradmin/app/manifests/{digest}") == 1
    assert proxy.count_prefix("HEAD", "/v2/mirroradmin/app/manifests/") == 0


async def test_upstream_404_is_404(upstream: UpstreamRegistry, mirror: Client) -> None:
    await upstream.push("mirroradmin/app", "v1", [b"x"])
    resp = await mirror.get(f"/v2/{NAMESPACE}/mirroradmin/app/manifests/nope", headers=ACCEPT)
    assert resp.status == 404
    assert (await resp.json())["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    missing = sha256(b"never pushed")
    resp = await mirror.get(f"/v2/{NAMESPACE}/mirroradmin/app/blobs/{missing}")
    assert resp.status == 404
    assert (await resp.json())["errors"][0]["code"] == "BLOB_UNKNOWN"
    resp = await mirror.get(f"/v2/{NAMESPACE}/mirroradmin/nothing/manifests/v1")
    assert resp.status == 404


async def test_unprefixed_names_for_docker_registry_mirrors(
    upstream: UpstreamRegistry, proxy: Proxy, start_mirror: StartMirror
) -> None:
    await upstream.push("library/alpine", "3.20", [b"hub layer"])
    await upstream.push("mirroradmin/shadowed", "v1", [b"upstream's"])
    mirror = await start_mirror(
        Upstream(
            "hub.test", proxy.url, ADMIN, ADMIN_PASSWORD, library_prefix=True, serve_unprefixed=True
        )
    )
    # docker's registry-mirrors request: no prefix, no ?ns=.
    digest, _ = await pull(mirror, "library/alpine", "3.20")
    assert (await pull(mirror, "hub.test/library/alpine", "3.20"))[0] == digest
    assert proxy.count("GET", "/v2/library/alpine/manifests/3.20") == 1

    # A local repository of that name comes first: pushes and pulls stay local.
    local = await V2Client(mirror).push_image("mirroradmin/shadowed", "v1", [b"local"])
    assert (await pull(mirror, "mirroradmin/shadowed", "v1"))[1] == local
    assert proxy.count("GET", "/v2/mirroradmin/shadowed/manifests/v1") == 0


async def test_an_index_and_its_children_are_fetched_as_asked(
    upstream: UpstreamRegistry, proxy: Proxy, mirror: Client
) -> None:
    child = await upstream.push("mirroradmin/multi", "amd64", [b"amd64 layer"])
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": sha256(child),
                    "size": len(child),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    ).encode()
    await upstream.push_raw("mirroradmin/multi", "latest", [], index, OCI_INDEX)
    name = f"{NAMESPACE}/mirroradmin/multi"
    resp = await mirror.get(f"/v2/{name}/manifests/latest", headers={"Accept": OCI_INDEX})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == OCI_INDEX
    assert await resp.read() == index
    assert proxy.count_prefix("GET", "/v2/mirroradmin/multi/manifests/sha256:") == 0  # lazily

    digest, body = await pull(mirror, name, sha256(child))
    assert body == child
    assert proxy.count("GET", f"/v2/mirroradmin/multi/manifests/{digest}") == 1
