"""Attack: one account opens upload sessions without end (each a row and a file for an hour).

A user has at most ``max_uploads_per_user`` open sessions (429 TOOMANYREQUESTS
beyond); other users are not affected; finishing or cancelling frees a place.
A failed single-POST upload leaves no hidden session behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import asyncpg
import pytest
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from tests.conftest import Client
from tests.support.content import sha256
from tests.support.docker_v1 import DockerV1, basic
from tests.support.store import upload_files

LIMIT = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings, auth_mode="token", max_uploads_per_user=LIMIT, max_layer_bytes=1000
    )


@pytest.fixture
async def client(settings: Settings, aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_app(settings))


async def _user(client: Client, name: str) -> dict[str, str]:
    assert await DockerV1(client, name, "secret-pw").login(email=f"{name}@example.com") == 201
    return {"Authorization": basic(name, "secret-pw")}


async def test_sessions_per_user_are_capped(client: Client) -> None:
    alice = await _user(client, "alice")
    bob = await _user(client, "bob_b")
    opened = await asyncio.gather(
        *(client.post("/v2/alice/app/blobs/uploads/", headers=alice) for _ in range(LIMIT + 3))
    )
    statuses = sorted(resp.status for resp in opened)
    assert statuses == [202] * LIMIT + [429] * 3  # concurrent starts count one by one
    refused = next(resp for resp in opened if resp.status == 429)
    assert refused.headers["Retry-After"].isdigit()
    error = (await refused.json())["errors"][0]
    assert error["code"] == "TOOMANYREQUESTS"
    assert error["detail"] == {"limit": LIMIT}

    resp = await client.post("/v2/bob_b/app/blobs/uploads/", headers=bob)
    assert resp.status == 202  # another user is not affected

    location = next(resp.headers["Location"] for resp in opened if resp.status == 202)
    assert (await client.delete(location, headers=alice)).status == 204
    resp = await client.post("/v2/alice/app/blobs/uploads/", headers=alice)
    assert resp.status == 202  # a cancelled session frees its place


async def test_failed_monolithic_upload_leaves_no_session(
    client: Client, settings: Settings, db: asyncpg.Connection
) -> None:
    alice = await _user(client, "alice")
    wrong = sha256(b"something else")
    for _ in range(LIMIT + 1):
        resp = await client.post(
            f"/v2/alice/app/blobs/uploads/?digest={wrong}", data=b"the bytes", headers=alice
        )
        assert resp.status == 400
        assert json.loads(await resp.read())["errors"][0]["code"] == "DIGEST_INVALID"
    # A body over the size limit.
    for _ in range(LIMIT + 1):
        resp = await client.post(
            f"/v2/alice/app/blobs/uploads/?digest={wrong}", data=b"x" * 2000, headers=alice
        )
        assert resp.status == 413
    assert await db.fetchval("SELECT count(*) FROM v2_uploads") == 0
    assert upload_files(settings) == []
    resp = await client.post("/v2/alice/app/blobs/uploads/", headers=alice)
    assert resp.status == 202
