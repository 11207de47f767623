"""Content digests (``sha256:<hex>``) and the hashers that compute them while streaming."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from registryd.errors import DigestInvalid

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^(sha256|sha512):([a-f0-9]+)$")


@dataclass(frozen=True, slots=True)
class Digest:
    """A parsed, validated content digest. Safe to use in a path."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``algorithm:hex``; raise DigestInvalid for anything else."""
        match = _DIGEST_RE.fullmatch(text)
        if match is None or len(match.group(2)) != _HEX_LENGTH[match.group(1)]:
            raise DigestInvalid(text)
        return cls(match.group(1), match.group(2))

    @classmethod
    def sha256_of(cls, data: bytes) -> Digest:
        return cls("sha256", hashlib.sha256(data).hexdigest())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class Sha256:
    """An incremental sha256 whose result is a Digest."""

    __slots__ = ("_hash",)

    def __init__(self, prefix: bytes = b"") -> None:
        self._hash = hashlib.sha256(prefix)

    def update(self, data: bytes | memoryview) -> None:
        # hashlib releases the GIL for buffers over 2 KiB, so this runs well in a thread.
        self._hash.update(data)

    def digest(self) -> Digest:
        return Digest("sha256", self._hash.hexdigest())


def payload_checksum_hasher(image_json: bytes) -> Sha256:
    """The v1 payload checksum: sha256(json + b"\\n" + layer) (v1 spec §7.1).

    Feed it the layer bytes exactly as received; ``str(digest())`` is the
    ``X-Docker-Checksum-Payload`` value the client must send.
    """
    return Sha256(image_json + b"\n")


class Hasher:
    """An incremental hash of any supported algorithm; ``copy`` forks its state."""

    __slots__ = ("_algorithm", "_hash")

    def __init__(self, algorithm: str = "sha256") -> None:
        if algorithm not in _HEX_LENGTH:
            raise DigestInvalid(algorithm)
        self._algorithm = algorithm
        self._hash = hashlib.new(algorithm)

    @property
    def algorithm(self) -> str:
        return self._algorithm

    def update(self, data: bytes | memoryview) -> None:
        self._hash.update(data)

    def copy(self) -> Hasher:
        clone = Hasher.__new__(Hasher)
        clone._algorithm = self._algorithm
        clone._hash = self._hash.copy()
        return clone

    def digest(self) -> Digest:
        return Digest(self._algorithm, self._hash.hexdigest())


def digest_of(data: bytes, algorithm: str = "sha256") -> Digest:
    """The digest of ``data`` with ``algorithm`` (sha256 or sha512)."""
    hasher = Hasher(algorithm)
    hasher.update(data)
    return hasher.digest()
