"""Deterministic v1 images (JSON + gzip tar layer) built the way docker builds them."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from dataclasses import dataclass

from tests.support.content import sha256, tar_of


@dataclass(frozen=True)
class V1Image:
    image_id: str
    json: bytes
    layer: bytes
    parent: str | None

    @property
    def payload_checksum(self) -> str:
        """``X-Docker-Checksum-Payload``: sha256(json + "\\n" + layer) (v1 spec §7.1)."""
        return sha256(self.json + b"\n" + self.layer)


def image_id(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def tar_layer(files: dict[str, bytes]) -> bytes:
    """A gzip-compressed tar of ``files``, like the body docker streams on PUT layer."""
    return gzip.compress(tar_of(files, mtime=1_400_000_000), mtime=0)


def make_image(seed: str, layer: bytes, parent: str | None = None, **extra: object) -> V1Image:
    iid = image_id(seed)
    body: dict[str, object] = {"id": iid, **extra}
    if parent is not None:
        body["parent"] = parent
    return V1Image(iid, json.dumps(body, separators=(",", ":")).encode(), layer, parent)


def make_chain(prefix: str, layers: list[bytes]) -> list[V1Image]:
    """Images base → top, each the parent of the next."""
    chain: list[V1Image] = []
    parent: str | None = None
    for i, layer in enumerate(layers):
        image = make_image(f"{prefix}-{i}", layer, parent, created="2014-06-01T00:00:00Z")
        chain.append(image)
        parent = image.image_id
    return chain
