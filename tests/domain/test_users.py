"""Operator-side account bootstrap, as every --workers process does it at start-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from registryd.config import Settings
from registryd.db.pool import create_pool
from registryd.domain import users
from registryd.domain.services import Services
from registryd.errors import UserExists
from registryd.storage.filesystem import FilesystemBackend


@pytest.fixture
async def svc(settings: Settings) -> AsyncIterator[Services]:
    assert settings.database_url is not None
    pool = await create_pool(settings.database_url, settings)
    yield Services(pool, FilesystemBackend(settings.storage_root), settings, b"")
    await pool.close()


async def test_concurrent_bootstraps_of_one_admin_all_succeed(
    svc: Services, db: asyncpg.Connection
) -> None:
    created = await asyncio.gather(
        *(users.ensure_user(svc, "admin", "admin-password", is_admin=True) for _ in range(4))
    )
    assert sorted(created) == [False, False, False, True]
    assert await db.fetchval("SELECT count(*) FROM users WHERE is_admin") == 1


async def test_bootstrap_refuses_an_email_of_another_account(svc: Services) -> None:
    await users.ensure_user(svc, "first", "password-1", is_admin=False, email="x@example.com")
    with pytest.raises(UserExists):
        await users.ensure_user(svc, "second", "password-2", is_admin=False, email="x@example.com")
    with pytest.raises(UserExists):
        await users.ensure_user(svc, "first_b", "password-3", is_admin=False, email="X@example.com")
    # The existing account itself may keep or change its address.
    assert (
        await users.ensure_user(svc, "first", "password-4", is_admin=True, email="x@example.com")
        is False
    )
