from __future__ import annotations

import asyncio

import asyncpg

from registryd.db import repository_queries
from registryd.names import RepositoryName

NAME = RepositoryName("alice", "raced")


async def test_ensure_repository_when_another_transaction_creates_it_first(
    database_url: str,
) -> None:
    """Found by containerd's parallel blob mounts into a repository that did not exist yet."""
    first = await asyncpg.connect(database_url)
    second = await asyncpg.connect(database_url)
    try:
        first_tx = first.transaction()
        await first_tx.start()
        created = await repository_queries.ensure_repository(first, NAME)
        async with second.transaction():
            # Blocks on the uncommitted row until the first transaction commits.
            racing = asyncio.create_task(repository_queries.ensure_repository(second, NAME))
            await asyncio.sleep(0.2)
            assert not racing.done()
            await first_tx.commit()
            assert (await racing).repository_id == created.repository_id
    finally:
        await first.close()
        await second.close()
