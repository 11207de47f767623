"""Bytes the test clients push: the one digest helper and the one tar builder."""

from __future__ import annotations

import hashlib
import io
import tarfile


def sha256(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of ``data``, as a registry names it."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(files: dict[str, bytes], mtime: int = 1_700_000_000) -> bytes:
    """An uncompressed tar of ``files`` (in order), byte-identical for identical input."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()
