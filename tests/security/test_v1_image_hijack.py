"""Issue: v1 image ids are global and client-chosen, and a public repository's declared list
is readable by anyone before docker uploads the images. Another user must never be able to
upload, change or complete the bytes behind an id that alice's repository declared."""

from __future__ import annotations

import asyncio
import json

import asyncpg

from registryd.config import Settings
from tests.conftest import Client
from tests.security.token_mode import client, settings  # token mode: real users
from tests.security.v1_support import chain, declare, registry, stored
from tests.support.docker_v1 import DockerV1
from tests.support.images import make_chain, make_image, tar_layer
from tests.support.v1client import V1Client

__all__ = ["client", "settings"]  # the fixtures

EVIL_LAYER = tar_layer({"evil": b"rm -rf /\n"})
HELD = "is being uploaded to another repository; retry once that upload is complete"


async def test_declared_id_cannot_be_uploaded_by_another_user(
    client: Client,
    db: asyncpg.Connection,
    settings: Settings,
    alice: DockerV1,
    bob: DockerV1,
    anonymous: DockerV1,
) -> None:
    images = chain("alice-webapp")
    top = images[-1]
    status, _, _ = await declare(alice, "alice/webapp", [i.image_id for i in images])
    assert status == 200
    # Anyone reads the ids of a public repository before alice uploads them.
    status, body, _ = await anonymous.index("GET", "/v1/repositories/alice/webapp/images")
    assert status == 200
    assert top.image_id in [entry["id"] for entry in json.loads(body)]
    _, _, bob_token = await declare(bob, "bob_b/evil", [])  # a repository of his own
    before = await stored(db, settings)

    # bob declares the id in his own repository: refused while alice's repository holds it.
    status, body, _ = await declare(bob, "bob_b/evil", [top.image_id])
    assert status == 409
    assert body == {"error": f"Image {top.image_id} {HELD}"}
    status, body, _ = await bob.index(
        "PUT", "/v1/repositories/bob_b/evil/images", [{"id": top.image_id}]
    )
    assert status == 409
    # With a token for a repository of his that does not declare it, and with Basic.
    forged = make_image("alice-webapp-1", EVIL_LAYER, images[0].image_id)
    assert forged.image_id == top.image_id
    for bob_registry, refused in ((registry(bob, bob_token), 400), (registry(bob), 403)):
        assert (await bob_registry.put_json(forged))[0] == refused
        assert (await bob_registry.put_layer(top.image_id, EVIL_LAYER))[0] == refused
        assert (await bob_registry.put_checksum(top.image_id, forged.payload_checksum))[0] == (
            refused
        )
    assert await stored(db, settings) == before

    # alice's docker push goes through, and her tag serves her bytes.
    await alice.push("alice/webapp", "latest", images)
    pulled = await anonymous.pull("alice/webapp", "latest")
    assert pulled == [(i.image_id, i.json, i.layer) for i in images]


async def test_uploading_image_cannot_be_rewritten_by_another_user(
    client: Client, alice: DockerV1, bob: DockerV1, anonymous: DockerV1
) -> None:
    """The variant: while alice's image is still uploading, bob re-PUTs its layer and checksum."""
    (image,) = chain("half-done")[:1]
    _, _, token = await declare(alice, "alice/webapp", [image.image_id])
    alice_registry = registry(alice, token)
    assert (await alice_registry.put_json(image))[0] == 200
    assert (await alice_registry.put_layer(image.image_id, image.layer))[0] == 200

    forged = make_image("half-done-0", EVIL_LAYER, created="2014-06-01T00:00:00Z")
    assert forged.image_id == image.image_id
    # bob declares the id in his repository to get write access to it: refused.
    status, body, _ = await declare(bob, "bob_b/evil", [image.image_id])
    assert (status, body) == (409, {"error": f"Image {image.image_id} {HELD}"})
    _, _, bob_token = await declare(bob, "bob_b/evil", [])
    for bob_registry in (registry(bob, bob_token), registry(bob)):
        assert (await bob_registry.put_json(forged))[0] in (400, 403)
        assert (await bob_registry.put_layer(image.image_id, EVIL_LAYER))[0] in (400, 403)
        assert (await bob_registry.put_checksum(image.image_id, forged.payload_checksum))[0] in (
            400,
            403,
        )
    # Still alice's upload: her checksum completes it, with her layer.
    assert (await alice_registry.put_checksum(image.image_id, image.payload_checksum))[0] == 200
    assert (await alice_registry.tag("alice/webapp", "latest", image.image_id))[0] == 200
    assert await anonymous.pull("alice/webapp", "latest") == [
        (image.image_id, image.json, image.layer)
    ]


async def test_complete_image_is_immutable_even_for_its_owner(
    client: Client, db: asyncpg.Connection, settings: Settings, alice: DockerV1, bob: DockerV1
) -> None:
    images = chain("immutable")
    await alice.push("alice/webapp", "latest", images)
    top = images[-1]
    forged = make_image("immutable-1", EVIL_LAYER, images[0].image_id)
    before = await stored(db, settings)
    _, _, token = await declare(alice, "alice/webapp", [i.image_id for i in images])
    before_owner = await stored(db, settings)
    assert before_owner["v1_images"] == before["v1_images"]
    for who in (registry(alice, token), registry(alice)):
        assert await who.put_json(forged) == (409, {"error": "Image already exists"})
        assert (await who.put_layer(top.image_id, EVIL_LAYER))[0] == 409
        status, body = await who.put_checksum(top.image_id, forged.payload_checksum)
        assert (status, body) == (409, {"error": "Cannot set this image checksum"})
    # bob may reuse the public image in his repository, but not change it either.
    status, _, bob_token = await declare(bob, "bob_b/copy", [top.image_id])
    assert status == 200
    assert await registry(bob, bob_token).put_json(forged) == (
        409,
        {"error": "Image already exists"},
    )
    assert (await registry(bob, bob_token).put_layer(top.image_id, EVIL_LAYER))[0] == 409
    assert (await stored(db, settings))["v1_images"] == before["v1_images"]
    assert (await stored(db, settings))["blob files"] == before["blob files"]


async def test_base_layers_are_reused_across_users(
    client: Client, alice: DockerV1, bob: DockerV1, anonymous: DockerV1
) -> None:
    """docker's legitimate reuse: bob's image built FROM alice's public base."""
    base = chain("shared-base", size=200_000)
    await alice.push("alice/base", "latest", base)
    app = make_chain("bob-app", [tar_layer({"app": b"bob's app\n"})])[0]
    top = make_image("bob-app-top", app.layer, base[-1].image_id)
    images = [*base, top]
    declared = [{"id": i.image_id} for i in images]
    status, _, headers = await bob.index("PUT", "/v1/repositories/bob_b/app/", declared)
    assert status == 200
    bob_registry = V1Client(client, "Token " + headers["X-Docker-Token"])
    outcomes = await bob_registry.push("bob_b/app", "latest", images)
    assert outcomes == ["exists", "exists", "pushed"]
    status, _, _ = await bob.index("PUT", "/v1/repositories/bob_b/app/images", declared)
    assert status == 204
    pulled = await anonymous.pull("bob_b/app", "latest")
    assert pulled == [(i.image_id, i.json, i.layer) for i in images]
    # A full docker push of the same chain again: everything exists, nothing changes.
    await bob.push("bob_b/app", "latest", images)
    assert await bob.pull("bob_b/app", "latest") == pulled


async def test_own_interrupted_upload_continues_in_another_repository(
    client: Client, alice: DockerV1, bob: DockerV1
) -> None:
    """docker pushing the same new image to a second repository of the same user."""
    images = chain("moved")
    _, _, token = await declare(alice, "alice/first", [i.image_id for i in images])
    assert (await registry(alice, token).put_json(images[0]))[0] == 200  # then interrupted
    await alice.push("alice/second", "latest", images)
    assert len(await alice.pull("alice/second", "latest")) == 2
    # The id is held by alice's repositories only: bob still cannot take it.
    status, _, _ = await declare(bob, "bob_b/evil", [images[0].image_id])
    assert status == 200  # complete and public now: reusable, not writable
    assert (await registry(bob).put_layer(images[0].image_id, EVIL_LAYER))[0] == 409


async def test_deleting_the_repository_does_not_free_its_ids(
    client: Client, alice: DockerV1, bob: DockerV1
) -> None:
    images = chain("deleted")
    _, _, token = await declare(alice, "alice/webapp", [i.image_id for i in images])
    assert (await registry(alice, token).put_json(images[0]))[0] == 200
    status, _, _ = await alice.index("DELETE", "/v1/repositories/alice/webapp/")
    assert status == 200
    status, body, _ = await declare(bob, "bob_b/evil", [i.image_id for i in images])
    first = min(i.image_id for i in images)  # ids are checked in sorted order
    assert (status, body) == (409, {"error": f"Image {first} {HELD}"})
    # alice recreates the repository and finishes her push.
    await alice.push("alice/webapp", "latest", images)


async def test_concurrent_declarations_of_a_new_id_have_one_winner(
    client: Client, alice: DockerV1, bob: DockerV1
) -> None:
    images = chain("race")
    ids = [i.image_id for i in images]
    results = await asyncio.gather(
        *(declare(alice, f"alice/r{n}", ids) for n in range(3)),
        # In the other order: concurrent claims must not deadlock either.
        *(declare(bob, f"bob_b/r{n}", ids[::-1]) for n in range(3)),
    )
    alice_ok = [status for status, _, _ in results[:3]]
    bob_ok = [status for status, _, _ in results[3:]]
    # Whoever's declaration came first holds the ids; the other user was refused every time.
    assert (set(alice_ok), set(bob_ok)) in [({200}, {409}), ({409}, {200})]
    winner = alice if alice_ok[0] == 200 else bob
    loser = bob if winner is alice else alice
    namespace = "alice" if winner is alice else "bob_b"
    await winner.push(f"{namespace}/r0", "latest", images)
    loser_ns = "bob_b" if winner is alice else "alice"
    # Complete and public: now the other user may reuse (not change) them.
    await loser.push(f"{loser_ns}/r0", "latest", images)
    assert await loser.pull(f"{loser_ns}/r0", "latest") == [
        (i.image_id, i.json, i.layer) for i in images
    ]
