"""Issue: private v1 layers, JSON and ancestry went out with ``Cache-Control: public,
max-age=31536000`` and private v2 blobs without ``private``: a shared cache could hand
content behind credentials to anyone. Only what anyone may read is marked shareable."""

from __future__ import annotations

import dataclasses

from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from tests.conftest import Client
from tests.security.token_mode import client, settings  # token mode: real users
from tests.security.v1_support import chain
from tests.support.docker_v1 import DockerV1
from tests.support.v2client import V2Client

__all__ = ["client", "settings"]  # the fixtures

PUBLIC = "public, max-age=31536000"
PRIVATE = "private, max-age=31536000"


async def make_private(client: Client, user: DockerV1, repository: str) -> None:
    resp = await client.put(
        f"/v1/repositories/{repository}/properties",
        json={"access": "private"},
        headers=user.basic,
    )
    assert resp.status == 200


async def v1_cache_headers(client: Client, image_id: str, headers: dict[str, str]) -> set[str]:
    seen = set()
    for part in ("json", "layer", "ancestry"):
        for conditional in ({}, {"If-None-Match": '"x"'}):
            resp = await client.get(
                f"/v1/images/{image_id}/{part}", headers={**headers, **conditional}
            )
            assert resp.status == (304 if conditional else 200), part
            seen.add(resp.headers["Cache-Control"])
    return seen


async def test_v1_private_images_are_never_marked_public(
    client: Client, alice: DockerV1, anonymous: DockerV1
) -> None:
    images = chain("cached")
    await alice.push("alice/app", "latest", images)
    top = images[-1].image_id
    assert await v1_cache_headers(client, top, {}) == {PUBLIC}
    await make_private(client, alice, "alice/app")
    _, _, headers = await alice.index("GET", "/v1/repositories/alice/app/images")
    token = {"Authorization": "Token " + headers["X-Docker-Token"]}
    assert await v1_cache_headers(client, top, alice.basic) == {PRIVATE}
    assert await v1_cache_headers(client, top, token) == {PRIVATE}
    # Once a public repository references the image too, anyone may read it: shareable.
    await alice.push("alice/public_copy", "latest", images)
    assert await v1_cache_headers(client, top, alice.basic) == {PUBLIC}


async def test_v2_private_blobs_and_manifests_are_marked_private(
    client: Client, alice: DockerV1
) -> None:
    v2 = V2Client(client, alice.basic)
    await v2.push_image("alice/v2app", "latest", [b"layer one"])
    blob = f"/v2/alice/v2app/blobs/{'sha256:'}"
    digest = (await v2.push_blob("alice/v2app", b"layer one")).removeprefix("sha256:")
    resp = await client.get(blob + digest, headers=alice.basic)
    assert resp.headers["Cache-Control"] == "max-age=31536000"  # public: as before
    resp = await client.get("/v2/alice/v2app/manifests/latest", headers=alice.basic)
    assert "Cache-Control" not in resp.headers
    await make_private(client, alice, "alice/v2app")
    resp = await client.get(blob + digest, headers=alice.basic)
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "private, max-age=31536000"
    for method in ("GET", "HEAD"):
        resp = await client.request(method, "/v2/alice/v2app/manifests/latest", headers=alice.basic)
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "private"


async def test_without_anonymous_pulls_nothing_is_shareable(
    settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(create_app(dataclasses.replace(settings, anonymous_pull=False)))
    alice = DockerV1(client, "alice", "secret-pw")
    assert await alice.login() == 201
    images = chain("no-anonymous")
    await alice.push("alice/app", "latest", images)
    assert await v1_cache_headers(client, images[-1].image_id, alice.basic) == {PRIVATE}
    v2 = V2Client(client, alice.basic)
    digest = await v2.push_blob("alice/app", b"blob")
    resp = await client.get(f"/v2/alice/app/blobs/{digest}", headers=alice.basic)
    assert resp.headers["Cache-Control"] == "private, max-age=31536000"
