"""Dependency checks behind ``/readyz``: each cheap, bounded in time, and free of side effects."""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing

import asyncpg

from registryd.errors import DatabaseUnavailable, RegistryError
from registryd.storage.base import Backend

# Set when a dependency this server runs itself (the embedded PostgreSQL) failed
# for good; /livez then answers 503. Shared memory, so forked workers see it too.
_FAILED = multiprocessing.RawValue(ctypes.c_bool, False)


def mark_failed() -> None:
    _FAILED.value = True


def has_failed() -> bool:
    return bool(_FAILED.value)


async def _select_one(pool: asyncpg.Pool, timeout_seconds: float) -> None:
    async with pool.acquire(timeout=timeout_seconds) as conn:
        await conn.fetchval("SELECT 1", timeout=timeout_seconds)


# The probe still unwinding from a check that timed out (at most one per pool).
_pending: dict[int, asyncio.Task[None]] = {}


async def check_database(pool: asyncpg.Pool, timeout_seconds: float) -> str | None:
    """None when PostgreSQL answers ``SELECT 1`` in time, else why not.

    Goes through the pool, so a dead connection is replaced on the way, and
    a server that came back is noticed on the next check. The answer comes
    within ``timeout_seconds`` even when PostgreSQL hangs: the probe runs as
    its own task, and one that times out is left to unwind (releasing a
    connection to a hung server waits too) while the check answers; later
    checks wait on that same probe instead of stacking new ones.
    """
    probe = _pending.get(id(pool))
    if probe is None or probe.done():
        probe = asyncio.create_task(_select_one(pool, timeout_seconds))
        probe.add_done_callback(_forget)
        _pending[id(pool)] = probe
    done, _ = await asyncio.wait([probe], timeout=timeout_seconds)
    if not done:
        return f"no answer within {timeout_seconds:g}s"
    try:
        probe.result()
    except (TimeoutError, DatabaseUnavailable) as exc:
        cause = exc.__cause__ or exc
        return f"{type(cause).__name__}: {cause}" if str(cause) else "no answer in time"
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _forget(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a probe nobody waited for must not warn
    for key, pending in list(_pending.items()):
        if pending is task:
            del _pending[key]


async def check_storage(
    storage: Backend, timeout_seconds: float, min_free_bytes: int = 0
) -> str | None:
    """None when the backend can take new blobs (and has ``min_free_bytes`` free, where
    it knows its free space), else why not.

    Bounded: a hung network filesystem or object store reads as not ready.
    """
    try:
        async with asyncio.timeout(timeout_seconds):
            return await storage.check(min_free_bytes)
    except TimeoutError:
        return f"no answer within {timeout_seconds:g}s"
    except (OSError, RegistryError) as exc:
        return f"{type(exc).__name__}: {exc}"
