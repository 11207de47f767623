"""A v1 client that makes the registry calls in docker 1.x's order (v1 spec §9.1, §9.2)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from tests.support.images import V1Image

# The in-process test client, or a session with base_url for a server process.
Http = TestClient[Any, Any] | aiohttp.ClientSession


async def chunked(data: bytes, chunk_bytes: int = 256 * 1024) -> AsyncIterator[bytes]:
    """A body aiohttp sends with ``Transfer-Encoding: chunked``, as docker does."""
    for start in range(0, len(data), chunk_bytes):
        yield data[start : start + chunk_bytes]


class V1Client:
    """Registry calls; ``auth`` is the Authorization header sent on each (docker: a token)."""

    def __init__(self, http: Http, auth: str | None = None) -> None:
        self.http = http
        self.auth = auth

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes, Any]:
        if self.auth is not None:
            kwargs["headers"] = {"Authorization": self.auth, **kwargs.get("headers", {})}
        async with self.http.request(method, path, **kwargs) as resp:
            return resp.status, await resp.read(), resp.headers

    async def push_image(self, image: V1Image) -> str:
        """Push one image; return "pushed" or "exists" (docker's two outcomes)."""
        status, _, _ = await self.call("GET", f"/v1/images/{image.image_id}/json")
        if status == 200:
            return "exists"
        status, body, _ = await self.call(
            "PUT",
            f"/v1/images/{image.image_id}/json",
            data=image.json,
            headers={"Content-Type": "application/json"},
        )
        if status == 409 and json.loads(body) == {"error": "Image already exists"}:
            return "exists"
        assert status == 200, body
        status, body, _ = await self.call(
            "PUT",
            f"/v1/images/{image.image_id}/layer",
            data=chunked(image.layer),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert status == 200, body
        status, body, _ = await self.call(
            "PUT",
            f"/v1/images/{image.image_id}/checksum",
            headers={
                "X-Docker-Checksum": "tarsum+sha256:" + "0" * 64,
                "X-Docker-Checksum-Payload": image.payload_checksum,
            },
        )
        assert status == 200, body
        return "pushed"

    async def push(self, repository: str, tag: str, chain: list[V1Image]) -> list[str]:
        outcomes = [await self.push_image(image) for image in chain]
        status, body, _ = await self.call(
            "PUT",
            f"/v1/repositories/{repository}/tags/{tag}",
            data=json.dumps(chain[-1].image_id),
            headers={"Content-Type": "application/json"},
        )
        assert status == 200, body
        return outcomes

    async def pull(self, repository: str, tag: str) -> list[tuple[str, bytes, bytes]]:
        """Pull ``repository:tag``; return (id, json, layer) base → top."""
        status, body, _ = await self.call("GET", f"/v1/repositories/{repository}/tags/{tag}")
        assert status == 200, body
        top = json.loads(body)
        status, body, _ = await self.call("GET", f"/v1/images/{top}/ancestry")
        assert status == 200, body
        ancestry = json.loads(body)
        assert ancestry[0] == top
        pulled = []
        for iid in reversed(ancestry):
            status, image_json, headers = await self.call("GET", f"/v1/images/{iid}/json")
            assert status == 200, image_json
            size = int(headers["X-Docker-Size"])
            status, layer, headers = await self.call("GET", f"/v1/images/{iid}/layer")
            assert status == 200, layer
            assert headers["Accept-Ranges"] == "bytes"
            assert len(layer) == size
            pulled.append((iid, image_json, layer))
        return pulled
