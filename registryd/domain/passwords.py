"""Password hashing with Argon2id; every hash runs off the event loop, on its own threads.

Argon2 is deliberately expensive (19 MiB, ~20-40 ms of a core), and anyone can
make us compute it by sending wrong Basic credentials. On the default executor
it would queue in front of the blob reads and writes of every other client, so
hashes get a small pool of their own (``password_hash_threads``) with a bounded
queue (``password_hash_queue``): a hash that would wait beyond it is refused at
once with ``ServerBusy`` (503) instead of piling up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import threading
from collections.abc import Callable
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from registryd.errors import ServerBusy

T = TypeVar("T")

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


class HashPool:
    """A thread pool for hashes that refuses work beyond ``threads + queue`` pending jobs."""

    def __init__(self, threads: int, queue: int) -> None:
        self.threads = threads
        self.queue = queue
        self._executor = concurrent.futures.ThreadPoolExecutor(
            threads, thread_name_prefix="registryd-password-hash"
        )
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    def _done(self, _: object) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, function: Callable[..., T], *args: object) -> T:
        with self._lock:
            if self._pending >= self.threads + self.queue:
                raise ServerBusy("Too many logins in progress; retry later", retry_after=1)
            self._pending += 1
        future = self._executor.submit(function, *args)
        # Counted until the job really ends (or is cancelled before it started),
        # even when the request that wanted it has gone.
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


_pool = HashPool(1, 16)


def configure(threads: int, queue: int) -> None:
    """Size this process's hashing pool (settings ``password_hash_threads`` / ``_queue``)."""
    global _pool
    if (_pool.threads, _pool.queue) != (threads, queue):
        old, _pool = _pool, HashPool(threads, queue)
        old.shutdown()


async def hash_password(password: str) -> str:
    return await _pool.run(_HASHER.hash, password)


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        matched = _HASHER.verify(password_hash or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return matched and password_hash is not None


def _cache_key(password_hash: str, password: str) -> bytes:
    return hashlib.sha256(f"{password_hash}\0{password}".encode()).digest()


async def verify_password(
    password_hash: str | None,
    password: str,
    before_hashing: Callable[[], None] | None = None,
) -> bool:
    """True if ``password`` matches; ``None`` (unknown user) spends the same time and is False.

    ``before_hashing`` runs when the answer needs a real hash (not a recently
    verified password) and may refuse it by raising (login throttling).
    """
    if len(password) > MAX_PASSWORD_CHARS:
        password = password[:MAX_PASSWORD_CHARS]  # still hashed: no shortcut to time
        password_hash = None
    if password_hash is not None and _cache_key(password_hash, password) in _verified:
        return True
    if before_hashing is not None:
        before_hashing()
    ok = await _pool.run(_verify, password_hash, password)
    if ok and password_hash is not None:
        if len(_verified) >= _VERIFIED_MAX_ENTRIES:
            _verified.clear()
        _verified.add(_cache_key(password_hash, password))
    return ok
