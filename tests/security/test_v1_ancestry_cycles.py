"""Issue: parent cycles (A -> B -> A) were accepted, and ancestry depth was unbounded with
quadratic storage. A parent must be complete (so no chain can loop back), and an image
may have at most 127 layers, docker's own limit."""

from __future__ import annotations

import json

import asyncpg

from registryd.domain.images import MAX_ANCESTRY_DEPTH
from tests.conftest import Client
from tests.security.token_mode import client, settings  # token mode: real users
from tests.security.v1_support import declare, registry
from tests.support.docker_v1 import DockerV1
from tests.support.images import image_id, make_image, tar_layer
from tests.support.v1client import V1Client

__all__ = ["client", "settings"]  # the fixtures

LAYER = tar_layer({"f": b"layer\n"})


async def test_a_parent_cycle_is_refused(
    client: Client, db: asyncpg.Connection, alice: DockerV1
) -> None:
    a, b = image_id("cycle-a"), image_id("cycle-b")
    _, _, token = await declare(alice, "alice/cycle", [a, b])
    alice_registry = registry(alice, token)
    b_alone = make_image("cycle-b", LAYER)
    a_on_b = make_image("cycle-a", LAYER, b)
    b_on_a = make_image("cycle-b", LAYER, a)
    assert (await alice_registry.put_json(b_alone))[0] == 200
    # A on B while B is still uploading (B's parent could still change): refused.
    status, body = await alice_registry.put_json(a_on_b)
    assert (status, body) == (400, {"error": "Parent image is being uploaded, retry later"})
    # ...so B can never be re-sent on top of A.
    status, body = await alice_registry.put_json(b_on_a)
    assert (status, body) == (400, {"error": "Image depends on a non existing parent"})
    rows = await db.fetch("SELECT image_id, parent_id FROM v1_images")
    assert [(r["image_id"], r["parent_id"]) for r in rows] == [(b, None)]


async def test_ancestry_deeper_than_docker_allows_is_refused(
    client: Client, db: asyncpg.Connection, alice: DockerV1
) -> None:
    chain = []
    parent = None
    for n in range(MAX_ANCESTRY_DEPTH + 1):
        image = make_image(f"deep-{n}", LAYER, parent)
        chain.append(image)
        parent = image.image_id
    _, _, token = await declare(alice, "alice/deep", [i.image_id for i in chain])
    v1 = V1Client(client, "Token " + token)
    for image in chain[:MAX_ANCESTRY_DEPTH]:
        assert await v1.push_image(image) == "pushed"
    status, body = await registry(alice, token).put_json(chain[-1])
    assert (status, body) == (400, {"error": "Image ancestry is deeper than 127 layers"})
    # The deepest allowed image is complete and pulls with its 127 ancestors.
    assert (await registry(alice, token).tag("alice/deep", "latest", chain[-2].image_id))[0] == 200
    resp = await client.get(
        f"/v1/images/{chain[-2].image_id}/ancestry", headers={"Authorization": "Token " + token}
    )
    ancestry = json.loads(await resp.read())
    assert len(ancestry) == MAX_ANCESTRY_DEPTH
    stored = await db.fetchval("SELECT max(cardinality(ancestry)) FROM v1_images")
    assert stored == MAX_ANCESTRY_DEPTH
