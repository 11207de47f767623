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

``uploads/`` is on the same filesystem as ``blobs/`` so the commit is one
atomic ``rename``: a content-addressed path either does not exist or holds the
complete, verified bytes.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from registryd.digest import Digest

UPLOAD_SUFFIX = ".part"


def blobs_dir(root: Path) -> Path:
    return root / "blobs"


def uploads_dir(root: Path) -> Path:
    return root / "uploads"


def blob_path(root: Path, digest: Digest) -> Path:
    """Where the blob lives. ``Digest`` is validated hex, so this never escapes root."""
    return blobs_dir(root) / digest.algorithm / digest.hex[:2] / digest.hex


def new_upload_path(root: Path) -> Path:
    return uploads_dir(root) / (secrets.token_hex(16) + UPLOAD_SUFFIX)
