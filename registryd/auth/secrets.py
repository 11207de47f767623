"""The token signing secret: from configuration, or generated once into the data directory."""

from __future__ import annotations

import contextlib
import os
import secrets

from registryd.config import Settings


def load_token_secret(settings: Settings) -> bytes:
    """The configured secret, else the one in ``data_dir/token-secret`` (created 0600 if absent).

    Blocks (file IO): call it off the event loop. Replicas must share a
    configured secret; a generated one is only shared through a shared data directory.
    """
    if settings.token_secret is not None:
        return settings.token_secret.encode()
    path = settings.token_secret_file
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write a private temp file, then link it into place: a concurrent reader sees
    # either no file or the whole secret, and only one writer can win.
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(secrets.token_urlsafe(48).encode())
            file.flush()
            os.fsync(file.fileno())
        # FileExistsError: another worker or replica won the race; use theirs.
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        temp.unlink()
    return path.read_bytes().strip()
