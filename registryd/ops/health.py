"""Dependency checks behind ``/readyz``: each cheap, bounded in time, and free of side effects."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg

from registryd.storage import paths


async def check_database(pool: asyncpg.Pool, timeout_seconds: float) -> str | None:
    """None when PostgreSQL answers ``SELECT 1`` in time, else why not.

    Goes through the pool, so a dead connection is replaced on the way, and
    a server that came back is noticed on the next check.
    """
    try:
        async with asyncio.timeout(timeout_seconds), pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
    except TimeoutError:
        return f"no answer within {timeout_seconds:g}s"
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_storage_sync(storage_root: Path, min_free_bytes: int) -> str | None:
    # Uploads are written in one and renamed into the other on commit.
    for directory in (paths.uploads_dir(storage_root), paths.blobs_dir(storage_root)):
        if not directory.is_dir():
            return f"{directory} is not a directory"
        # access(2) also answers EROFS for a read-only mount, without writing anything.
        if not os.access(directory, os.W_OK | os.X_OK):
            return f"{directory} is not writable"
    if min_free_bytes:
        stats = os.statvfs(paths.uploads_dir(storage_root))
        free = stats.f_bavail * stats.f_frsize
        if free < min_free_bytes:
            return f"storage has {free} bytes free, less than min_free_bytes ({min_free_bytes})"
    return None


async def check_storage(
    storage_root: Path, timeout_seconds: float, min_free_bytes: int = 0
) -> str | None:
    """None when new uploads can be written under ``storage_root`` and it has at least
    ``min_free_bytes`` free, else why not.

    Runs off the loop, bounded: a hung network filesystem reads as not ready.
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_seconds):
            return await loop.run_in_executor(
                None, _check_storage_sync, storage_root, min_free_bytes
            )
    except TimeoutError:
        return f"no answer within {timeout_seconds:g}s"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
