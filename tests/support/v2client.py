"""A minimal OCI distribution client: the calls skopeo, containerd and oras make."""

from __future__ import annotations

import json
from typing import Any

from tests.support.content import sha256
from tests.support.v1client import Http, chunked

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"


def descriptor(data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def image_manifest(config: bytes, layers: list[bytes], **extra: Any) -> bytes:
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [descriptor(layer, "application/vnd.oci.image.layer.v1.tar") for layer in layers],
        **extra,
    }
    return json.dumps(body, indent=3).encode()  # odd formatting: bytes must survive as sent


class V2Client:
    def __init__(self, http: Http, headers: dict[str, str] | None = None) -> None:
        self.http = http
        self.headers = headers or {}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes, Any]:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        async with self.http.request(method, path, headers=headers, **kwargs) as resp:
            return resp.status, await resp.read(), resp.headers

    async def push_blob(self, name: str, data: bytes) -> str:
        """POST, one streamed PATCH (chunked encoding), PUT ?digest= — skopeo's way."""
        status, body, headers = await self.call("POST", f"/v2/{name}/blobs/uploads/")
        assert status == 202, body
        status, body, headers = await self.call(
            "PATCH", headers["Location"], data=chunked(data, 64 * 1024)
        )
        assert status == 202, body
        digest = sha256(data)
        status, body, headers = await self.call("PUT", f"{headers['Location']}?digest={digest}")
        assert status == 201, body
        assert headers["Docker-Content-Digest"] == digest
        return digest

    async def push_manifest(
        self, name: str, reference: str, body: bytes, media_type: str = OCI_MANIFEST
    ) -> tuple[int, bytes, Any]:
        return await self.call(
            "PUT",
            f"/v2/{name}/manifests/{reference}",
            data=body,
            headers={"Content-Type": media_type},
        )

    async def push_image(self, name: str, tag: str, layers: list[bytes]) -> bytes:
        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        for blob in [config, *layers]:
            await self.push_blob(name, blob)
        manifest = image_manifest(config, layers)
        status, body, _ = await self.push_manifest(name, tag, manifest)
        assert status == 201, body
        return manifest
