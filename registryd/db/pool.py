"""The asyncpg connection pool."""

from __future__ import annotations

import asyncpg

from registryd.config import Settings


async def create_pool(database_url: str, settings: Settings) -> asyncpg.Pool:
    """Open the pool; raise asyncpg/OSError errors if the server is unreachable."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        # Behind a transaction-mode PgBouncer prepared statements cannot be cached.
        statement_cache_size=settings.db_statement_cache_size,
        command_timeout=60,
    )
    assert pool is not None
    return pool
