"""Attack: turn a token bound to *read* one repository into rights on the whole account.

alice's docker holds a v1 index token for reading her public ``alice/pub``. Whoever
gets hold of it (a CI log, a proxy) must not be able to trade it at ``/v2/token``
for push or delete on her private ``alice/secret``, nor list that repository
through ``/v1/search`` or ``/v2/_catalog``; a v2 bearer token must not widen
itself either (at the token endpoint, or by minting a v1 token).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jwt
import pytest
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.auth import bearer
from registryd.config import Settings
from tests.auth.conftest import signed_up
from tests.conftest import Client
from tests.support.docker_v1 import DockerV1


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, auth_mode="token")


@pytest.fixture
async def client(settings: Settings, aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def alice(client: Client) -> DockerV1:
    alice = await signed_up(client, "alice")
    for name in ("pub", "secret"):
        status, body, _ = await alice.index("PUT", f"/v1/repositories/alice/{name}/", [])
        assert status == 200, body
    status, body, _ = await alice.call(
        "PUT",
        "/v1/repositories/alice/secret/properties",
        json={"access": "private"},
        headers=alice.basic,
    )
    assert status == 200, body
    return alice


async def read_token(alice: DockerV1) -> str:
    """The v1 token docker receives for pulling ``alice/pub``."""
    status, body, headers = await alice.index("GET", "/v1/repositories/alice/pub/images")
    assert status == 200, body
    assert "access=read" in headers["X-Docker-Token"]
    return "Token " + str(headers["X-Docker-Token"])


async def v2_token(client: Client, authorization: str, *scopes: str) -> list[dict[str, Any]]:
    resp = await client.get(
        "/v2/token",
        params=[("service", bearer.SERVICE), *(("scope", s) for s in scopes)],
        headers={"Authorization": authorization},
    )
    assert resp.status == 200, await resp.text()
    token = (await resp.json())["token"]
    access: list[dict[str, Any]] = jwt.decode(token, options={"verify_signature": False})["access"]
    return access


async def test_a_read_token_buys_nothing_on_another_repository(
    client: Client, alice: DockerV1
) -> None:
    token = await read_token(alice)
    access = await v2_token(
        client, token, "repository:alice/secret:pull,push,delete", "repository:alice/pub:*"
    )
    assert access == [
        {"type": "repository", "name": "alice/secret", "actions": []},
        {"type": "repository", "name": "alice/pub", "actions": ["pull"]},
    ]
    # The JWT it bought cannot read (let alone delete in) the private repository.
    resp = await client.get(
        "/v2/token",
        params={"service": bearer.SERVICE, "scope": "repository:alice/secret:pull,delete"},
        headers={"Authorization": token},
    )
    bought = (await resp.json())["token"]
    resp = await client.get(
        "/v2/alice/secret/tags/list", headers={"Authorization": f"Bearer {bought}"}
    )
    assert resp.status == 401


async def test_a_read_token_lists_no_private_repository(client: Client, alice: DockerV1) -> None:
    token = await read_token(alice)
    resp = await client.get("/v1/search", params={"q": "alice"}, headers={"Authorization": token})
    assert resp.status == 200
    assert [r["name"] for r in (await resp.json())["results"]] == ["alice/pub"]
    resp = await client.get("/v2/_catalog", headers={"Authorization": token})
    assert resp.status == 200
    assert (await resp.json())["repositories"] == ["alice/pub"]
    # With her password she still sees both.
    resp = await client.get("/v2/_catalog", headers=alice.basic)
    assert (await resp.json())["repositories"] == ["alice/pub", "alice/secret"]


async def test_a_bearer_token_cannot_widen_itself(client: Client, alice: DockerV1) -> None:
    access = await v2_token(client, alice.basic["Authorization"], "repository:alice/pub:push")
    assert access == [{"type": "repository", "name": "alice/pub", "actions": ["push"]}]
    resp = await client.get(
        "/v2/token",
        params={"service": bearer.SERVICE, "scope": "repository:alice/pub:push"},
        headers=alice.basic,
    )
    push_only = "Bearer " + (await resp.json())["token"]
    # Not traded for a wider JWT, whatever the spelling of the scheme...
    # (a tab is no separator in credentials: that header is malformed, 400)
    for scheme, status in (("Bearer ", 401), ("BEARER  ", 401), ("bearer\t", 400)):
        resp = await client.get(
            "/v2/token",
            params={"scope": "repository:alice/secret:pull,push,delete"},
            headers={"Authorization": scheme + push_only.split(" ", 1)[1]},
        )
        assert resp.status == status
        assert "access_token" not in await resp.text()
    # ...nor for a v1 write token (which would also read and delete).
    status, _, headers = await alice.call(
        "PUT",
        "/v1/repositories/alice/pub/",
        json=[],
        headers={"Authorization": push_only, "X-Docker-Token": "true"},
    )
    assert status == 200
    assert "X-Docker-Token" not in headers
    # Nor does it list or read the private repository through v1.
    resp = await client.get("/v2/_catalog", headers={"Authorization": push_only})
    assert (await resp.json())["repositories"] == ["alice/pub"]
    status, _, _ = await alice.call(
        "GET", "/v1/repositories/alice/secret/images", headers={"Authorization": push_only}
    )
    assert status == 403
