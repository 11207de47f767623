"""Issue: with ``public_host`` unset, the ``Host`` header went unescaped into the Bearer
``realm`` and ``X-Docker-Endpoints`` (``Host: a",realm="http://evil.example``). A Host that
is not ``host[:port]`` is now a 400, refused before anything is written."""

from __future__ import annotations

import dataclasses

import asyncpg
import pytest
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from tests.conftest import Client
from tests.security.token_mode import client, settings  # token mode: real users
from tests.security.v1_support import stored
from tests.support.docker_v1 import DockerV1

__all__ = ["client", "settings"]  # the fixtures

EVIL_HOSTS = [
    'a",realm="http://evil.example',
    "registry.example, evil.example",
    "evil.example/path",
    "a b",
    "user@evil.example",
]


@pytest.mark.parametrize("host", EVIL_HOSTS)
async def test_bad_host_never_reaches_the_bearer_realm(client: Client, host: str) -> None:
    resp = await client.get("/v2/", headers={"Host": host})
    assert resp.status == 400
    assert "WWW-Authenticate" not in resp.headers
    body = await resp.json()
    assert body["errors"][0]["code"] == "UNSUPPORTED"
    assert body["errors"][0]["message"] == "invalid Host header: expected host[:port]"


@pytest.mark.parametrize("host", EVIL_HOSTS)
async def test_bad_host_never_reaches_docker_endpoints(
    client: Client, db: asyncpg.Connection, settings: Settings, alice: DockerV1, host: str
) -> None:
    before = await stored(db, settings)
    resp = await client.put(
        "/v1/repositories/alice/app/",
        json=[],
        headers={**alice.basic, "X-Docker-Token": "true", "Host": host},
    )
    assert resp.status == 400
    assert "X-Docker-Endpoints" not in resp.headers
    assert await resp.json() == {"error": "Invalid Host header: expected host[:port]"}
    assert await stored(db, settings) == before  # refused before the repository was made


@pytest.mark.parametrize(
    "host", ["registry.example.com", "registry.example.com:5000", "[::1]:5000", "my_registry"]
)
async def test_good_hosts_are_used_as_sent(client: Client, alice: DockerV1, host: str) -> None:
    resp = await client.get("/v2/", headers={"Host": host})
    assert resp.status == 401
    assert f'realm="http://{host}/v2/token"' in resp.headers["WWW-Authenticate"]
    resp = await client.put(
        "/v1/repositories/alice/app/",
        json=[],
        headers={**alice.basic, "X-Docker-Token": "true", "Host": host},
    )
    assert resp.status == 200
    assert resp.headers["X-Docker-Endpoints"] == host


async def test_public_host_wins_over_any_host_header(
    settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(
        create_app(dataclasses.replace(settings, public_host="registry.example.com"))
    )
    resp = await client.get("/v2/", headers={"Host": EVIL_HOSTS[0]})
    assert resp.status == 401
    assert 'realm="http://registry.example.com/v2/token"' in resp.headers["WWW-Authenticate"]
    assert "evil" not in resp.headers["WWW-Authenticate"]
