"""Upstream authentication: the Bearer token flow (registryd upstream), Basic (distribution
with htpasswd), anonymous, and tokens reused rather than fetched per request."""

from __future__ import annotations

import time

import aiohttp
from yarl import URL

from registryd.config import Upstream
from registryd.mirror.service import MIRROR
from tests.mirror.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    NAMESPACE,
    Distribution,
    StartMirror,
    StartUpstream,
)
from tests.mirror.proxy import Proxy
from tests.mirror.test_pull_through import ACCEPT, pull
from tests.support.content import sha256
from tests.support.docker_v1 import basic
from tests.support.v2client import OCI_MANIFEST, image_manifest


async def test_bearer_flow_with_credentials_and_token_reuse(
    start_upstream: StartUpstream, start_mirror: StartMirror
) -> None:
    upstream = start_upstream(REGISTRYD_ANONYMOUS_PULL="false")
    proxy = Proxy(upstream.server.url)
    await proxy.start()
    try:
        await upstream.push("mirroradmin/app", "v1", [b"one", b"two"])
        await upstream.push("mirroradmin/app", "v2", [b"three"])
        mirror = await start_mirror(Upstream(NAMESPACE, proxy.url, ADMIN, ADMIN_PASSWORD))
        await pull(mirror, f"{NAMESPACE}/mirroradmin/app", "v1")
        await pull(mirror, f"{NAMESPACE}/mirroradmin/app", "v2")
        # One 401 taught the realm; one token then served every request of the scope.
        assert proxy.count_prefix("GET", "/v2/token") == 1
        # The shared config and three layers: each fetched once.
        assert proxy.count_prefix("GET", "/v2/mirroradmin/app/blobs/") == 4

        # Kept until shortly before the expiry the token endpoint stated (expires_in)...
        client = mirror.app[MIRROR].client(mirror.app[MIRROR].upstreams[NAMESPACE])
        (token,) = client._tokens.values()  # white box: the clock, not the protocol
        assert 200 < token.expires_at - time.monotonic() <= 300
        # ...and renewed once that time has come (the clock moved on by hand).
        token.expires_at = time.monotonic() - 1
        await upstream.push("mirroradmin/app", "v3", [b"four"])
        await pull(mirror, f"{NAMESPACE}/mirroradmin/app", "v3")
        assert proxy.count_prefix("GET", "/v2/token") == 2

        # Without credentials the upstream refuses: a clear 403, not a 5xx or a hang.
        anonymous = await start_mirror(Upstream("anon.test", proxy.url))
        resp = await anonymous.get("/v2/anon.test/mirroradmin/app/manifests/v1", headers=ACCEPT)
        assert resp.status == 403
        error = (await resp.json())["errors"][0]
        assert error["code"] == "DENIED"
        assert error["detail"]["upstream"] == "anon.test"
    finally:
        await proxy.close()


async def test_anonymous_bearer_flow(
    start_upstream: StartUpstream, start_mirror: StartMirror
) -> None:
    upstream = start_upstream()  # anonymous pulls of public repositories allowed
    await upstream.push("mirroradmin/public", "v1", [b"public layer"])
    mirror = await start_mirror(Upstream(NAMESPACE, upstream.server.url))
    digest, _ = await pull(mirror, f"{NAMESPACE}/mirroradmin/public", "v1")
    assert digest.startswith("sha256:")


async def test_basic_auth_against_distribution(
    distribution: Distribution, start_mirror: StartMirror
) -> None:
    config, layer = b'{"architecture":"amd64","os":"linux"}', b"distribution layer" * 500
    manifest = image_manifest(config, [layer])
    auth = {"Authorization": basic(ADMIN, ADMIN_PASSWORD)}
    async with aiohttp.ClientSession(base_url=distribution.url, headers=auth) as http:
        for blob in (config, layer):
            # Monolithic: POST, then PUT with the bytes (distribution's Location has a query).
            async with http.post("/v2/team/tool/blobs/uploads/") as resp:
                assert resp.status == 202
                location = URL(resp.headers["Location"])
            async with http.put(
                location.path, params={**location.query, "digest": sha256(blob)}, data=blob
            ) as resp:
                assert resp.status == 201, await resp.text()
        async with http.put(
            "/v2/team/tool/manifests/1.0", data=manifest, headers={"Content-Type": OCI_MANIFEST}
        ) as resp:
            assert resp.status == 201, await resp.text()

    mirror = await start_mirror(Upstream("dist.test", distribution.url, ADMIN, ADMIN_PASSWORD))
    _, body = await pull(mirror, "dist.test/team/tool", "1.0")
    assert body == manifest
    assert (await pull(mirror, "team/tool", "1.0", "?ns=dist.test"))[1] == manifest

    wrong = await start_mirror(Upstream("wrong.test", distribution.url, ADMIN, "not-it"))
    resp = await wrong.get("/v2/wrong.test/team/tool/manifests/1.0", headers=ACCEPT)
    assert resp.status == 403
    assert (await resp.json())["errors"][0]["code"] == "DENIED"
    none = await start_mirror(Upstream("none.test", distribution.url))
    resp = await none.get("/v2/none.test/team/tool/manifests/1.0", headers=ACCEPT)
    assert resp.status == 403
