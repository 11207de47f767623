"""The rollout's nodes pull like containerd: challenge, token, manifest, config, then the
layers three at a time; a short layer or a refused token is a failed node, not a pull.

The registry here is a small aiohttp app, to count what each node asks and to serve
a layer shorter than its manifest says (the bench smoke run pulls from registryd).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter

from aiohttp import web
from aiohttp.pytest_plugin import AiohttpServer

from bench import rollout, v2
from bench.workloads import make_blob

LAYERS = [make_blob(f"rollout-test-{i}", 1000 * (i + 1)) for i in range(5)]
IMAGE = v2.image(LAYERS)
CREDENTIALS = v2.basic("node", "secret")


class Registry:
    def __init__(self, short_layer: bool = False) -> None:
        self.short_layer = short_layer
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.blobs = {blob.digest_hex: blob.size for blob in LAYERS}
        self.blobs[IMAGE.config_hex] = len(IMAGE.config)

    def authorized(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != "Bearer t0k":
            raise web.HTTPUnauthorized(
                headers={"WWW-Authenticate": 'Bearer realm="/v2/token",service="registryd"'}
            )

    async def token(self, request: web.Request) -> web.Response:
        self.calls["token"] += 1
        if request.headers.get("Authorization") != CREDENTIALS:
            raise web.HTTPUnauthorized()
        assert request.query["scope"] == "repository:bench/app:pull"
        return web.json_response({"token": "t0k"})

    async def manifest(self, request: web.Request) -> web.Response:
        self.calls[f"{request.method} manifest"] += 1
        self.authorized(request)
        headers = {"Docker-Content-Digest": f"sha256:{IMAGE.manifest_hex}"}
        return web.Response(body=IMAGE.manifest, headers=headers, content_type=v2.MANIFEST_V2)

    async def blob(self, request: web.Request) -> web.Response:
        self.authorized(request)
        digest = request.match_info["digest"].removeprefix("sha256:")
        self.calls["blob"] += 1
        size = self.blobs[digest]
        if self.short_layer and digest == LAYERS[-1].digest_hex:
            size -= 1
        if digest != IMAGE.config_hex:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(0.01)  # layer downloads overlap, as real ones do
            finally:
                self.in_flight -= 1
        return web.Response(body=b"\0" * size)

    async def start(self, aiohttp_server: AiohttpServer) -> int:
        app = web.Application()
        app.router.add_get("/v2/token", self.token)
        app.router.add_get("/v2/bench/app/manifests/{ref}", self.manifest)
        app.router.add_get("/v2/bench/app/blobs/{digest}", self.blob)
        server = await aiohttp_server(app)
        assert server.port is not None
        return server.port


async def test_every_node_trades_credentials_and_pulls_the_whole_image(
    aiohttp_server: AiohttpServer,
) -> None:
    registry = Registry()
    port = await registry.start(aiohttp_server)
    node = rollout.Node("127.0.0.1", port, "latest", CREDENTIALS)
    result = await rollout.rollout(node, 3)
    assert result.errors == 0, result.error_kinds
    assert result.requests == 3
    assert len(result.latencies) == 3
    assert max(result.latencies) <= result.seconds
    image_bytes = len(IMAGE.manifest) + len(IMAGE.config) + sum(b.size for b in LAYERS)
    assert result.body_bytes == 3 * image_bytes
    assert registry.calls["token"] == 3  # one token request per node
    assert registry.calls["HEAD manifest"] == 6  # challenged, then with the token
    assert registry.calls["GET manifest"] == 3
    assert registry.calls["blob"] == 3 * (len(LAYERS) + 1)
    # Three nodes, each with at most three layer downloads at a time.
    assert 3 < registry.max_in_flight <= 3 * rollout.PARALLEL_LAYERS


async def test_a_short_layer_fails_the_node(aiohttp_server: AiohttpServer) -> None:
    registry = Registry(short_layer=True)
    port = await registry.start(aiohttp_server)
    result = await rollout.rollout(rollout.Node("127.0.0.1", port, "latest", CREDENTIALS), 2)
    assert result.requests == 0
    assert result.body_bytes == 0
    assert result.errors == 2
    assert any("expected" in kind for kind in result.error_kinds)


async def test_wrong_credentials_fail_every_node(aiohttp_server: AiohttpServer) -> None:
    registry = Registry()
    port = await registry.start(aiohttp_server)
    node = rollout.Node("127.0.0.1", port, "latest", v2.basic("node", "wrong"))
    result = await rollout.rollout(node, 2)
    assert result.requests == 0
    assert result.errors == 2
    assert all("HTTP 401" in kind for kind in result.error_kinds)


def test_the_image_lists_its_config_and_layers_by_digest() -> None:
    manifest = json.loads(IMAGE.manifest)
    assert manifest["config"]["digest"] == f"sha256:{IMAGE.config_hex}"
    assert IMAGE.config_hex == hashlib.sha256(IMAGE.config).hexdigest()
    assert [layer["size"] for layer in manifest["layers"]] == [b.size for b in LAYERS]
