"""OCI images built on the fly: random tar layers in an OCI image layout directory.

What ``skopeo copy oci:<dir>:<tag> …`` reads; no network, no base image.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.content import sha256, tar_of

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


@dataclass
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
            **extra,
        }


@dataclass
class Image:
    """One platform's image: config, layers and the manifest bytes."""

    config: Blob
    layers: list[Blob]
    manifest: Blob

    @property
    def blobs(self) -> list[Blob]:
        return [self.config, *self.layers]


def make_layer(seed: str, size: int, *, compress: bool = True) -> Blob:
    """A tar holding one file of ``size`` random bytes (gzipped unless ``compress`` is off)."""
    tar = tar_of({f"data/{seed}.bin": os.urandom(size), "etc/seed": seed.encode()})
    if compress:
        return Blob(LAYER_GZIP, gzip.compress(tar, compresslevel=1, mtime=0))
    return Blob(LAYER_TAR, tar)


def make_image(layers: list[Blob], arch: str = "amd64", **manifest_extra: Any) -> Image:
    diff_ids = [
        sha256(gzip.decompress(b.data)) if b.media_type == LAYER_GZIP else b.digest for b in layers
    ]
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_blob = Blob(OCI_CONFIG, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [b.descriptor() for b in layers],
        **manifest_extra,
    }
    return Image(config_blob, layers, Blob(OCI_MANIFEST, json.dumps(manifest, indent=2).encode()))


def make_index(images: list[Image]) -> Blob:
    entries = []
    for image in images:
        arch = json.loads(image.config.data)["architecture"]
        entries.append(image.manifest.descriptor(platform={"architecture": arch, "os": "linux"}))
    body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return Blob(OCI_INDEX, json.dumps(body).encode())


@dataclass
class Layout:
    """An OCI image layout directory: ``oci:<path>:<tag>`` for skopeo."""

    path: Path
    refs: list[dict[str, Any]] = field(default_factory=list)

    def add_blob(self, blob: Blob) -> None:
        target = self.path / "blobs" / "sha256" / blob.digest.removeprefix("sha256:")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob.data)

    def add_image(self, image: Image, tag: str | None) -> None:
        for blob in [*image.blobs, image.manifest]:
            self.add_blob(blob)
        if tag is not None:
            self._ref(image.manifest, tag)

    def add_index(self, images: list[Image], tag: str) -> Blob:
        for image in images:
            self.add_image(image, None)
        index = make_index(images)
        self.add_blob(index)
        self._ref(index, tag)
        return index

    def _ref(self, blob: Blob, tag: str) -> None:
        self.refs.append(blob.descriptor(annotations={"org.opencontainers.image.ref.name": tag}))
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs}
        (self.path / "index.json").write_text(json.dumps(index))


def rehash_dir(path: Path) -> dict[str, int]:
    """For ``skopeo copy … dir:<path>``: every blob file's sha256 must match its name.

    Returns {digest: size} of the blobs (the manifest file is checked by the caller).
    """
    found: dict[str, int] = {}
    for entry in path.iterdir():
        if entry.name in ("manifest.json", "version") or entry.name.endswith(".manifest.json"):
            continue
        data = entry.read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.name, f"{entry.name} is corrupt"
        found["sha256:" + entry.name] = len(data)
    return found
