"""Password hashing with Argon2id; every call runs off the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's minimum for Argon2id (19 MiB, 2 passes): ~40 ms a hash on one core.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified when the user does not exist, so unknown users cost as much as wrong passwords.
_DUMMY_HASH = _HASHER.hash("registryd: no such user")

MIN_PASSWORD_CHARS = 5
# Long enough for any password manager; short enough that hashing stays cheap.
MAX_PASSWORD_CHARS = 256


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; ``None`` (unknown user) spends the same time and is False."""
    if len(password) > MAX_PASSWORD_CHARS:
        password = password[:MAX_PASSWORD_CHARS]  # still hashed: no shortcut to time
        password_hash = None
    return await asyncio.to_thread(_verify, password_hash, password)
