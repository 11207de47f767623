"""The on-disk layout of the filesystem backend. Only this module knows it.

::

    <storage root>/
        blobs/
            sha256/
                ab/
                    ab12…ef          one file per blob, named by its digest hex
        uploads/
            <random>.part            bytes still streaming in; renamed into blobs/
                                     on commit, removed on cancel or when stale
            <upload key>.part        an upload session's bytes so far (v2 chunked
                                     uploads); same life cycle, across requests

``uploads/`` is on the same filesystem as ``blobs/`` so the commit is one
atomic ``rename``: a content-addressed path either does not exist or holds the
complete, verified bytes.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from registryd.digest import Digest

UPLOAD_SUFFIX = ".part"
_UPLOAD_KEY_RE = re.compile(r"^[a-f0-9]{32}$")


def blobs_dir(root: Path) -> Path:
    return root / "blobs"


def uploads_dir(root: Path) -> Path:
    return root / "uploads"


def blob_path(root: Path, digest: Digest) -> Path:
    """Where the blob lives. ``Digest`` is validated hex, so this never escapes root."""
    return blobs_dir(root) / digest.algorithm / digest.hex[:2] / digest.hex


def new_upload_path(root: Path) -> Path:
    return uploads_dir(root) / (secrets.token_hex(16) + UPLOAD_SUFFIX)


def new_upload_key() -> str:
    """A fresh, unguessable name for an upload session's temp file."""
    return secrets.token_hex(16)


def is_upload_key(text: str) -> bool:
    return _UPLOAD_KEY_RE.fullmatch(text) is not None


def upload_session_path(root: Path, upload_key: str) -> Path:
    """The temp file of an upload session; the key is checked, so this never escapes root."""
    if not is_upload_key(upload_key):
        raise ValueError(f"not an upload key: {upload_key!r}")
    return uploads_dir(root) / (upload_key + UPLOAD_SUFFIX)
