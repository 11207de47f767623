from __future__ import annotations

import dataclasses

import pytest
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from tests.conftest import Client
from tests.support.docker_v1 import DockerV1

ADMIN = ("admin", "admin-password")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Tokens and permissions on, with a bootstrapped admin."""
    return dataclasses.replace(
        settings, auth_mode="token", admin_user=ADMIN[0], admin_password=ADMIN[1]
    )


@pytest.fixture
async def client(settings: Settings, aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_app(settings))


async def signed_up(client: Client, username: str, password: str = "secret-pw") -> DockerV1:
    docker = DockerV1(client, username, password)
    assert await docker.login(email=f"{username}@example.com") == 201
    return docker


@pytest.fixture
async def alice(client: Client) -> DockerV1:
    return await signed_up(client, "alice")


@pytest.fixture
async def bob(client: Client) -> DockerV1:
    return await signed_up(client, "bob_b")


@pytest.fixture
def admin(client: Client) -> DockerV1:
    return DockerV1(client, *ADMIN)


@pytest.fixture
def anonymous(client: Client) -> DockerV1:
    return DockerV1(client)
