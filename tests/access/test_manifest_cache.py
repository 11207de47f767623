"""Cached manifests are never served after their tag moved or they were deleted.

Two apps on one database stand for two workers (or replicas).
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp.pytest_plugin import AiohttpClient

from registryd.access import facts
from registryd.app import create_app
from registryd.config import Settings
from registryd.keys import SERVICES
from tests.access.conftest import armed
from tests.auth.conftest import signed_up
from tests.auth.test_v2_tokens import token_for
from tests.conftest import Client
from tests.support.content import sha256
from tests.support.docker_v1 import DockerV1
from tests.support.v2client import V2Client, image_manifest

CONFIG = json.dumps({"architecture": "amd64", "os": "linux"}).encode()


async def pusher(client: Client, user: DockerV1) -> V2Client:
    scope = "repository:alice/app:pull,push,delete"
    token = (await token_for(client, scope, user))["token"]
    return V2Client(client, {"Authorization": f"Bearer {token}"})


async def digest_served(client: Client, headers: dict[str, str], reference: str) -> str | int:
    resp = await client.get(f"/v2/alice/app/manifests/{reference}", headers=headers)
    body = await resp.read()
    return sha256(body) if resp.status == 200 else resp.status


async def push(v2: V2Client, tag: str, layer: bytes, **extra: object) -> str:
    await v2.push_blob("alice/app", CONFIG)
    await v2.push_blob("alice/app", layer)
    manifest = image_manifest(CONFIG, [layer], **extra)
    status, body, _ = await v2.push_manifest("alice/app", tag, manifest)
    assert status == 201, body
    return sha256(manifest)


async def within_a_second(client: Client, headers: dict[str, str], ref: str, want: object) -> None:
    changed = time.monotonic()
    while await digest_served(client, headers, ref) != want:
        assert time.monotonic() - changed < 1.0, "a stale manifest outlived the change by 1 s"
        await asyncio.sleep(0.01)


async def test_a_moved_tag_is_seen_by_the_writer_at_once_and_elsewhere_within_a_second(
    client: Client, settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    other = await aiohttp_client(create_app(settings))
    await armed(other)
    v2 = await pusher(client, await signed_up(client, "alice"))
    first = await push(v2, "latest", b"first layer")
    for app in (client, other):
        for _ in range(2):  # the second from the cache
            assert await digest_served(app, v2.headers, "latest") == first
    second = await push(v2, "latest", b"second layer")
    assert await digest_served(client, v2.headers, "latest") == second
    await within_a_second(other, v2.headers, "latest", second)


async def test_a_deleted_manifest_is_not_served_within_a_second(
    client: Client, settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    other = await aiohttp_client(create_app(settings))
    await armed(other)
    v2 = await pusher(client, await signed_up(client, "alice"))
    digest = await push(v2, "latest", b"a layer")
    for app in (client, other):
        for reference in (digest, "latest"):
            for _ in range(2):
                assert await digest_served(app, v2.headers, reference) == digest
    resp = await client.delete(f"/v2/alice/app/manifests/{digest}", headers=v2.headers)
    assert resp.status == 202
    for reference in (digest, "latest"):
        assert await digest_served(client, v2.headers, reference) == 404
        await within_a_second(other, v2.headers, reference, 404)


async def test_a_token_for_another_repository_gets_no_cached_manifest(client: Client) -> None:
    alice = await signed_up(client, "alice")
    bob = await signed_up(client, "bob_b")
    v2 = await pusher(client, alice)
    digest = await push(v2, "latest", b"a private layer")
    resp = await client.put(
        "/v1/repositories/alice/app/properties", json={"access": "private"}, headers=alice.basic
    )
    assert resp.status == 200
    assert await digest_served(client, v2.headers, "latest") == digest  # cached now
    token = (await token_for(client, "repository:alice/app:pull", bob))["token"]
    for _ in range(2):
        assert await digest_served(client, {"Authorization": f"Bearer {token}"}, "latest") == 401
    assert await digest_served(client, {}, digest) == 401


async def test_large_manifests_are_served_but_not_kept(client: Client) -> None:
    v2 = await pusher(client, await signed_up(client, "alice"))
    padding = {"annotations": {"padding": "x" * facts.MAX_CACHED_MANIFEST_BYTES}}
    digest = await push(v2, "big", b"a layer", **padding)
    access = client.app[SERVICES].access
    assert access is not None
    await armed(client)
    for _ in range(3):
        assert await digest_served(client, v2.headers, "big") == digest
    assert not any(str(row.digest) == digest for _, (_, row) in access._manifests.snapshot())
    small = await push(v2, "small", b"another layer")
    assert await digest_served(client, v2.headers, "small") == small
    assert any(str(row.digest) == small for _, (_, row) in access._manifests.snapshot())
