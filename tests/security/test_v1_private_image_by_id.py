"""Issue: tagging or declaring the id of an image that lives only in alice's private
repository made it readable through bob's public one, to anyone. Reusing an image
needs read access to it."""

from __future__ import annotations

import asyncpg

from registryd.config import Settings
from tests.conftest import Client
from tests.security.token_mode import client, settings  # token mode: real users
from tests.security.v1_support import chain, declare, registry, stored
from tests.support.docker_v1 import DockerV1
from tests.support.images import V1Image, make_image, tar_layer

__all__ = ["client", "settings"]  # the fixtures


async def private_push(client: Client, alice: DockerV1) -> list[V1Image]:
    images = chain("secret")
    await alice.push("alice/secret", "latest", images)
    resp = await client.put(
        "/v1/repositories/alice/secret/properties", json={"access": "private"}, headers=alice.basic
    )
    assert resp.status == 200
    return images


async def assert_unreadable(client: Client, image_id: str) -> None:
    for part in ("json", "layer", "ancestry"):
        resp = await client.get(f"/v1/images/{image_id}/{part}")
        assert resp.status == 401, part


async def test_tagging_a_private_image_by_id_is_refused(
    client: Client, db: asyncpg.Connection, settings: Settings, alice: DockerV1, bob: DockerV1
) -> None:
    images = await private_push(client, alice)
    secret = images[-1].image_id
    _, _, bob_token = await declare(bob, "bob_b/steal", [])
    before = await stored(db, settings)
    for who in (registry(bob, bob_token), registry(bob)):
        status, body = await who.tag("bob_b/steal", "latest", secret)
        assert (status, body) == (
            403,
            {"error": f"Image {secret} is in no repository you may read"},
        )
    assert await stored(db, settings) == before
    await assert_unreadable(client, secret)


async def test_declaring_a_private_image_by_id_is_refused(
    client: Client, db: asyncpg.Connection, settings: Settings, alice: DockerV1, bob: DockerV1
) -> None:
    images = await private_push(client, alice)
    ids = [i.image_id for i in images]
    _, _, _ = await declare(bob, "bob_b/steal", [])
    before = await stored(db, settings)
    status, body, _ = await declare(bob, "bob_b/steal", ids)
    first = min(ids)  # ids are checked in sorted order
    assert (status, body) == (403, {"error": f"Image {first} is in no repository you may read"})
    status, body, _ = await bob.index(
        "PUT", "/v1/repositories/bob_b/steal/images", [{"id": ids[-1]}]
    )
    assert status == 403
    assert await stored(db, settings) == before
    for image_id in ids:
        await assert_unreadable(client, image_id)


async def test_building_on_a_private_parent_is_refused(
    client: Client, alice: DockerV1, bob: DockerV1
) -> None:
    images = await private_push(client, alice)
    child = make_image("bob-child", tar_layer({"x": b"x"}), images[-1].image_id)
    _, _, token = await declare(bob, "bob_b/child", [child.image_id])
    status, body = await registry(bob, token).put_json(child)
    # As if it did not exist: its id must not lend bob its layers or ancestry.
    assert (status, body) == (400, {"error": "Image depends on a non existing parent"})


async def test_the_owner_and_admins_still_reuse_private_images(
    client: Client, alice: DockerV1, admin: DockerV1, anonymous: DockerV1
) -> None:
    images = await private_push(client, alice)
    # alice tags and declares her private image in another repository of hers.
    _, _, token = await declare(alice, "alice/other", [i.image_id for i in images])
    assert (await registry(alice, token).tag("alice/other", "v1", images[-1].image_id))[0] == 200
    assert len(await alice.pull("alice/other", "v1")) == 2
    # Made public by its owner, the copy is readable by anyone: her choice.
    assert len(await anonymous.pull("alice/other", "v1")) == 2
    # Admins may reuse anything.
    status, _, _ = await declare(admin, "library/mirror", [images[-1].image_id])
    assert status == 200
    # After the repository is deleted, alice can still reuse what she uploaded.
    status, _, _ = await alice.index("DELETE", "/v1/repositories/alice/secret/")
    assert status == 200
    status, _, _ = await alice.index("DELETE", "/v1/repositories/alice/other/")
    assert status == 200
    await alice.push("alice/again", "latest", images)
