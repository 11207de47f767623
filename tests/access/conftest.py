from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from registryd.keys import SERVICES
from tests.access.round_trips import RoundTrips
from tests.conftest import Client

ADMIN = ("admin", "admin-password")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Token mode with a bootstrapped admin, as production runs."""
    return dataclasses.replace(
        settings, auth_mode="token", admin_user=ADMIN[0], admin_password=ADMIN[1]
    )


@pytest.fixture
def round_trips() -> RoundTrips:
    return RoundTrips()


@pytest.fixture
async def client(
    settings: Settings,
    aiohttp_client: AiohttpClient,
    round_trips: RoundTrips,
    monkeypatch: pytest.MonkeyPatch,
) -> Client:
    app = create_app(settings)
    round_trips.install(app, monkeypatch)
    client = await aiohttp_client(app)
    await armed(client)
    return client


async def armed(client: Client) -> None:
    """Wait until the process's access cache listens for changes (it is bypassed before)."""
    access = client.app[SERVICES].access
    assert access is not None
    deadline = time.monotonic() + 10
    while not access.armed:
        assert time.monotonic() < deadline, "the access cache never armed"
        await asyncio.sleep(0.05)
