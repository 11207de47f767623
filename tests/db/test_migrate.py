from __future__ import annotations

import asyncio

import asyncpg

from registryd.db.migrate import apply_migrations, load_migrations


def test_migrations_are_numbered_and_headed_by_their_purpose() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    for migration in migrations:
        assert migration.sql.startswith(f"-- {migration.version:04d}: ")


async def test_applying_again_changes_nothing(db: asyncpg.Connection) -> None:
    # The test database is a clone of a migrated template.
    assert await apply_migrations(db) == []
    versions = [r["version"] for r in await db.fetch("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in await asyncio.to_thread(load_migrations)]
