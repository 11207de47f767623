"""Password hashing with Argon2id; every hash runs off the event loop."""

from __future__ import annotations

import asyncio
import functools
import hashlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's minimum for Argon2id (19 MiB, 2 passes): ~40 ms a hash on one core.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

MIN_PASSWORD_CHARS = 5
# Long enough for any password manager; short enough that hashing stays cheap.
MAX_PASSWORD_CHARS = 256

# Successful verifications, keyed by (stored hash, password) digests. Clients
# such as curl send Basic on every request; without this each layer GET would
# cost a full Argon2 hash. A changed password changes the stored hash, so stale
# entries can never match again.
_VERIFIED_MAX_ENTRIES = 4096
_verified: set[bytes] = set()


@functools.cache
def _dummy_hash() -> str:
    """Verified when the user does not exist, so unknown users cost as much as wrong passwords."""
    return _HASHER.hash("registryd: no such user")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        matched = _HASHER.verify(password_hash or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return matched and password_hash is not None


def _cache_key(password_hash: str, password: str) -> bytes:
    return hashlib.sha256(f"{password_hash}\0{password}".encode()).digest()


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; ``None`` (unknown user) spends the same time and is False."""
    if len(password) > MAX_PASSWORD_CHARS:
        password = password[:MAX_PASSWORD_CHARS]  # still hashed: no shortcut to time
        password_hash = None
    if password_hash is not None and _cache_key(password_hash, password) in _verified:
        return True
    ok = await asyncio.to_thread(_verify, password_hash, password)
    if ok and password_hash is not None:
        if len(_verified) >= _VERIFIED_MAX_ENTRIES:
            _verified.clear()
        _verified.add(_cache_key(password_hash, password))
    return ok
