"""The OCI Distribution (v2) paths users run: tokens, seeding an image, pushes, manifest reads.

registryd is spoken to as docker and containerd do in its default ``token`` mode:
a Bearer JWT from ``GET /v2/token`` (Basic credentials traded once; the token
lives 5 minutes, so a run fetches a fresh one before its clock starts).
distribution runs without auth and gets the same requests without the header.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import quote

from bench.loadgen import Connection, Operation, Response
from bench.workloads import REPOSITORY, Blob, UniqueLayers, _check, _chunks, _location, blob_bytes

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# Accept header of a manifest read, as containerd sends it (abridged).
ACCEPT = f"{MANIFEST_V2}, application/vnd.oci.image.manifest.v1+json"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def blob_path(digest_hex: str, repository: str = REPOSITORY) -> str:
    return f"/v2/{repository}/blobs/sha256:{digest_hex}"


def manifest_path(reference: str, repository: str = REPOSITORY) -> str:
    return f"/v2/{repository}/manifests/{reference}"


async def token(
    conn: Connection, actions: str, authorization: str | None, repository: str = REPOSITORY
) -> str:
    """A Bearer token for ``repository:<repository>:<actions>`` (``authorization``: the
    Basic header, or None for an anonymous one)."""
    scope = quote(f"repository:{repository}:{actions}", safe="")
    headers = {"Authorization": authorization} if authorization else {}
    resp = _check(
        await conn.request(
            "GET",
            f"/v2/token?service=registryd&scope={scope}",
            headers=headers,
            keep_body=True,
        ),
        200,
    )
    value: str = json.loads(resp.body)["token"]
    return value


async def bearer(conn: Connection, actions: str, authorization: str | None) -> dict[str, str]:
    return {"Authorization": "Bearer " + await token(conn, actions, authorization)}


async def push_monolithic(
    conn: Connection,
    digest_hex: str,
    body: bytes | memoryview | AsyncIterator[bytes | memoryview],
    size: int,
    headers: dict[str, str],
) -> None:
    """POST (open a session) + PUT ?digest= with the whole body."""
    resp = _check(
        await conn.request("POST", f"/v2/{REPOSITORY}/blobs/uploads/", headers=headers, body=b""),
        202,
    )
    sep = "&" if "?" in _location(resp) else "?"
    url = f"{_location(resp)}{sep}digest=sha256:{digest_hex}"
    if isinstance(body, bytes | memoryview):
        body = _chunks(body)
    _check(await conn.request("PUT", url, headers=headers, body=body, body_bytes=size), 201)


async def push_chunked(
    conn: Connection,
    digest_hex: str,
    body: AsyncIterator[bytes | memoryview],
    size: int,
    headers: dict[str, str],
) -> None:
    """POST + PATCH (the body, streamed, no Content-Range, as docker sends it) + PUT ?digest=."""
    resp = _check(
        await conn.request("POST", f"/v2/{REPOSITORY}/blobs/uploads/", headers=headers, body=b""),
        202,
    )
    resp = _check(
        await conn.request("PATCH", _location(resp), headers=headers, body=body, body_bytes=size),
        202,
    )
    sep = "&" if "?" in _location(resp) else "?"
    url = f"{_location(resp)}{sep}digest=sha256:{digest_hex}"
    _check(await conn.request("PUT", url, headers=headers, body=b""), 201)


@dataclass(frozen=True)
class Image:
    """A manifest (schema 2) over a config and ``layers``, as bytes and digests."""

    manifest: bytes
    manifest_hex: str
    config: bytes
    config_hex: str
    layers: tuple[Blob, ...]


def image(layers: list[Blob]) -> Image:
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {
                "type": "layers",
                "diff_ids": [f"sha256:{blob.digest_hex}" for blob in layers],
            },
        }
    ).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {
                "mediaType": CONFIG_V1,
                "size": len(config),
                "digest": f"sha256:{config_hex}",
            },
            "layers": [
                {"mediaType": LAYER_GZIP, "size": blob.size, "digest": f"sha256:{blob.digest_hex}"}
                for blob in layers
            ],
        }
    ).encode()
    return Image(manifest, hashlib.sha256(manifest).hexdigest(), config, config_hex, tuple(layers))


async def seed(
    conn: Connection, blobs: list[Blob], img: Image, tag: str, headers: dict[str, str]
) -> None:
    """Push ``blobs`` (skipping those the registry has) and tag ``img`` (its layers among them)."""
    for blob in blobs:
        resp = await conn.request("HEAD", blob_path(blob.digest_hex), headers=headers)
        if resp.status != 200:
            data = blob_bytes(blob.label, blob.size)
            await push_monolithic(conn, blob.digest_hex, data, len(data), headers)
    await push_monolithic(conn, img.config_hex, img.config, len(img.config), headers)
    _check(
        await conn.request(
            "PUT",
            manifest_path(tag),
            body=img.manifest,
            headers={**headers, "Content-Type": MANIFEST_V2},
        ),
        201,
    )


# Operations of the Python generator ---------------------------------------------


def pushes(layers: UniqueLayers, chunked: bool, headers: dict[str, str]) -> Iterator[Operation]:
    """Unique v2 pushes of ``layers.size`` bytes each; ``headers`` is read at each push, so
    the caller may renew its token between runs."""
    while True:

        async def push(conn: Connection) -> int:
            n = layers.next_number()
            if chunked:
                await push_chunked(conn, layers.digest_hex(n), layers.body(n), layers.size, headers)
            else:
                await push_monolithic(
                    conn, layers.digest_hex(n), layers.body(n), layers.size, headers
                )
            return layers.size

        yield push


def manifest_heads(reference: str, headers: dict[str, str]) -> Iterator[Operation]:
    """HEAD of a manifest (what containerd asks first on every pull); counted in requests."""
    all_headers = {**headers, "Accept": ACCEPT}

    async def head(conn: Connection) -> int:
        resp: Response = _check(
            await conn.request("HEAD", manifest_path(reference), headers=all_headers), 200
        )
        return resp.body_bytes

    while True:
        yield head
