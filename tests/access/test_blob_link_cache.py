"""The cached blob links and repository rows of v2 reads are never a source of stale grants.

Two apps on one database stand for two workers (or replicas): they share
nothing but PostgreSQL, exactly like separate processes.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from registryd.keys import SERVICES
from tests.access.conftest import armed
from tests.auth.conftest import signed_up
from tests.auth.test_v2_tokens import token_for
from tests.conftest import Client
from tests.support.content import sha256
from tests.support.docker_v1 import DockerV1
from tests.support.v2client import V2Client

LAYER = b"a layer of alice's " * 100


async def bearer(client: Client, scope: str, user: DockerV1) -> dict[str, str]:
    return {"Authorization": "Bearer " + (await token_for(client, scope, user))["token"]}


async def pushed(client: Client) -> tuple[DockerV1, str]:
    alice = await signed_up(client, "alice")
    pusher = V2Client(client, await bearer(client, "repository:alice/app:pull,push", alice))
    return alice, await pusher.push_blob("alice/app", LAYER)


async def status(client: Client, path: str, headers: dict[str, str] | None = None) -> int:
    resp = await client.get(path, headers=headers or {})
    await resp.read()
    return resp.status


async def warm(client: Client, path: str, headers: dict[str, str] | None = None) -> None:
    access = client.app[SERVICES].access
    assert access is not None
    for _ in range(2):
        assert await status(client, path, headers) == 200
    hits = access.hits
    assert await status(client, path, headers) == 200
    assert access.hits > hits, "repeated reads are answered from the cache"


async def within_a_second(client: Client, path: str, expected: int, **kw: dict[str, str]) -> None:
    changed = time.monotonic()
    while await status(client, path, kw.get("headers")) != expected:
        assert time.monotonic() - changed < 1.0, "a stale grant outlived the change by 1 s"
        await asyncio.sleep(0.01)


async def test_a_deleted_link_is_not_served_by_the_writer_at_once(client: Client) -> None:
    alice, digest = await pushed(client)
    headers = await bearer(client, "repository:alice/app:pull,push,delete", alice)
    path = f"/v2/alice/app/blobs/{digest}"
    await warm(client, path, headers)
    resp = await client.delete(path, headers=headers)
    assert resp.status == 202
    assert await status(client, path, headers) == 404
    resp = await client.head(path, headers=headers)
    assert resp.status == 404


async def test_a_deleted_link_is_not_served_by_another_worker_within_a_second(
    client: Client, settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    other = await aiohttp_client(create_app(settings))
    await armed(other)
    alice, digest = await pushed(client)
    headers = await bearer(client, "repository:alice/app:pull,push,delete", alice)
    path = f"/v2/alice/app/blobs/{digest}"
    await warm(other, path, headers)
    resp = await client.delete(path, headers=headers)
    assert resp.status == 202
    await within_a_second(other, path, 404, headers=headers)


async def test_a_repository_made_private_is_refused_by_another_worker_within_a_second(
    client: Client, settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    other = await aiohttp_client(create_app(settings))
    await armed(other)
    alice, digest = await pushed(client)
    path = f"/v2/alice/app/blobs/{digest}"
    await warm(other, path)  # anonymous: the repository's row decides
    resp = await client.put(
        "/v1/repositories/alice/app/properties", json={"access": "private"}, headers=alice.basic
    )
    assert resp.status == 200
    await within_a_second(other, path, 401)
    assert await status(other, path, alice.basic) == 200


async def test_a_link_cached_for_a_deleted_repository_does_not_serve_its_successor(
    client: Client, settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    other = await aiohttp_client(create_app(settings))
    await armed(other)
    alice, digest = await pushed(client)
    path = f"/v2/alice/app/blobs/{digest}"
    await warm(other, path)
    resp = await client.delete("/v1/repositories/alice/app/", headers=alice.basic)
    assert resp.status in (200, 202, 204), await resp.text()
    # The repository comes back under its name, without the blob.
    pusher = V2Client(client, await bearer(client, "repository:alice/app:pull,push", alice))
    await pusher.push_blob("alice/app", b"another layer")
    await within_a_second(other, path, 404)


async def test_a_missing_link_is_not_remembered(client: Client) -> None:
    """Only links that exist are cached: a blob pushed after a 404 is served at once."""
    alice, _ = await pushed(client)
    headers = await bearer(client, "repository:alice/app:pull,push", alice)
    later = b"pushed after a miss"
    path = f"/v2/alice/app/blobs/{sha256(later)}"
    for _ in range(2):
        assert await status(client, path, headers) == 404
    await V2Client(client, headers).push_blob("alice/app", later)
    assert await status(client, path, headers) == 200
