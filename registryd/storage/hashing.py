"""The one digest check every writer of every backend makes before bytes get an address."""

from __future__ import annotations

from registryd.digest import Digest, Hasher
from registryd.errors import DigestMismatch

# Bytes read back at a time when a hasher has to be rebuilt from stored bytes.
REHASH_CHUNK_BYTES = 1024 * 1024


def reusable(hasher: Hasher | None, expected: Digest) -> Hasher | None:
    """``hasher`` if it computes ``expected``'s algorithm, else None: re-hash the bytes
    (the state may have lived in another process, or hashed with another algorithm)."""
    if hasher is None or hasher.algorithm != expected.algorithm:
        return None
    return hasher


def verify(actual: Digest, expected: Digest | None) -> Digest:
    """Return ``actual``; raise DigestMismatch when ``expected`` is given and differs."""
    if expected is not None and actual != expected:
        raise DigestMismatch(str(expected), str(actual))
    return actual
