"""The on-disk layout of the filesystem backend. Only this module knows it.

::

    <storage root>/
        blobs/
            sha256/
                ab/
                    ab12…ef          one file per blob, named by its digest hex
        uploads/
            t<owner>-<random>.part   bytes still streaming in, written by the process
                                     whose key is <owner> (8 hex); renamed into blobs/
                                     on commit, removed on cancel, or once the owner
                                     is dead (registryd.db.process_owner)
            <upload key>.part        an upload session's bytes so far (v2 chunked
            <upload key>.<gen>.part  uploads), across requests; a takeover of a claim
                                     copies them into a new generation <gen> (16 hex)

``uploads/`` is on the same filesystem as ``blobs/`` so the commit is one
atomic ``rename``: a content-addressed path either does not exist or holds the
complete, verified bytes. Everything is created 0600 / 0700: the server is
the store's only reader, and some of it is private content.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from registryd.digest import Digest

UPLOAD_SUFFIX = ".part"
FILE_MODE = 0o600
DIR_MODE = 0o700
_UPLOAD_KEY_RE = re.compile(r"[a-f0-9]{32}")
_GENERATION_RE = re.compile(r"[a-f0-9]{16}")
_SESSION_FILE_RE = re.compile(r"([a-f0-9]{32})(?:\.([a-f0-9]{16}))?\.part")
_OWNED_FILE_RE = re.compile(r"t([a-f0-9]{8})-[a-f0-9]{32}\.part")


def blobs_dir(root: Path) -> Path:
    return root / "blobs"


def uploads_dir(root: Path) -> Path:
    return root / "uploads"


def blob_path(root: Path, digest: Digest) -> Path:
    """Where the blob lives. ``Digest`` is validated hex, so this never escapes root."""
    return blobs_dir(root) / digest.algorithm / digest.hex[:2] / digest.hex


def new_upload_path(root: Path, owner: int) -> Path:
    """A fresh temp file name of the process with key ``owner``."""
    return uploads_dir(root) / f"t{owner:08x}-{secrets.token_hex(16)}{UPLOAD_SUFFIX}"


def new_generation() -> str:
    return secrets.token_hex(8)


def new_upload_key() -> str:
    """A fresh, unguessable name for an upload session's temp file."""
    return secrets.token_hex(16)


def is_upload_key(text: str) -> bool:
    return _UPLOAD_KEY_RE.fullmatch(text) is not None


def upload_session_path(root: Path, upload_key: str, generation: str | None = None) -> Path:
    """The temp file of an upload session's ``generation`` (None: the first one).

    Key and generation are checked, so this never escapes root.
    """
    if not is_upload_key(upload_key):
        raise ValueError(f"not an upload key: {upload_key!r}")
    if generation is None:
        return uploads_dir(root) / (upload_key + UPLOAD_SUFFIX)
    if _GENERATION_RE.fullmatch(generation) is None:
        raise ValueError(f"not a generation: {generation!r}")
    return uploads_dir(root) / f"{upload_key}.{generation}{UPLOAD_SUFFIX}"


def parse_session_file(name: str) -> tuple[str, str | None] | None:
    """(upload key, generation) of a session file name, or None."""
    match = _SESSION_FILE_RE.fullmatch(name)
    return (match.group(1), match.group(2)) if match is not None else None


def parse_owned_file(name: str) -> int | None:
    """The owner key of a process's temp file name, or None."""
    match = _OWNED_FILE_RE.fullmatch(name)
    return int(match.group(1), 16) if match is not None else None
