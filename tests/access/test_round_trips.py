"""The PostgreSQL round trips of the hot read paths, pinned (warm caches, token mode).

Each number is the minimum the path needs; a change that adds a round trip to
a pull fails here and has to say why. A pool connection costs its statements
plus one reset when it goes back to the pool (asyncpg's ``Connection.reset``:
advisory locks, cursors, LISTENs, settings), so every acquire is at least two.
"""

from __future__ import annotations

from typing import Any

from tests.access.round_trips import RoundTrips
from tests.auth.conftest import signed_up
from tests.auth.test_docker_flows import chain
from tests.auth.test_v2_tokens import token_for
from tests.conftest import Client
from tests.support.content import sha256
from tests.support.docker_v1 import DockerV1
from tests.support.v2client import V2Client


async def bearer(client: Client, scope: str, user: DockerV1) -> dict[str, str]:
    return {"Authorization": "Bearer " + (await token_for(client, scope, user))["token"]}


async def statements_of(
    client: Client, round_trips: RoundTrips, method: str, path: str, headers: dict[str, str]
) -> list[str]:
    """The statements of one request, after two that warm every cache."""
    for _ in range(2):
        resp = await client.request(method, path, headers=headers)
        assert resp.status == 200, await resp.text()
        await resp.read()
    async with round_trips.during() as statements:
        resp = await client.request(method, path, headers=headers)
        assert resp.status == 200
        await resp.read()
    return statements


async def pushed_v2(client: Client) -> tuple[dict[str, str], str, bytes]:
    alice = await signed_up(client, "alice")
    pusher = V2Client(client, await bearer(client, "repository:alice/app:pull,push", alice))
    layer = b"layer bytes " * 1000
    manifest = await pusher.push_image("alice/app", "latest", [layer])
    pull = await bearer(client, "repository:alice/app:pull", alice)
    return pull, sha256(layer), manifest


async def test_v2_blob_get_and_head_need_no_round_trip(
    client: Client, round_trips: RoundTrips
) -> None:
    # The token decides alone; the repository's row and its blob link come from the
    # per-process access cache, which NOTIFY empties when a link is deleted.
    pull, layer, _ = await pushed_v2(client)
    for method in ("GET", "HEAD"):
        path = f"/v2/alice/app/blobs/{layer}"
        assert await statements_of(client, round_trips, method, path, pull) == []


async def test_v2_manifest_get_needs_no_round_trip(client: Client, round_trips: RoundTrips) -> None:
    # The repository's row and the manifest (by tag or digest) come from the per-process
    # cache, which NOTIFY empties when a tag moves or a manifest is deleted.
    pull, _, manifest = await pushed_v2(client)
    for reference in ("latest", sha256(manifest)):
        for method in ("GET", "HEAD"):
            path = f"/v2/alice/app/manifests/{reference}"
            assert await statements_of(client, round_trips, method, path, pull) == []


async def test_v2_tag_list_needs_one_statement(client: Client, round_trips: RoundTrips) -> None:
    # The page of tags is one statement (the repository's row is cached), plus the reset.
    pull, _, _ = await pushed_v2(client)
    statements = await statements_of(client, round_trips, "GET", "/v2/alice/app/tags/list", pull)
    assert len(statements) == 2, statements
    assert "v2_tags" in statements[0]


async def test_v1_layer_get_needs_no_round_trip_anonymously(
    client: Client, round_trips: RoundTrips
) -> None:
    # Which repositories reference the image is a cached access fact, and a complete
    # image is immutable (kept per process): the layer is served without PostgreSQL.
    alice = await signed_up(client, "alice")
    images = chain("pinned")
    await alice.push("alice/app", "latest", images)
    path = f"/v1/images/{images[-1].image_id}/layer"
    assert await statements_of(client, round_trips, "GET", path, {}) == []


async def test_v1_layer_get_with_a_password_reads_the_account(
    client: Client, round_trips: RoundTrips
) -> None:
    # Basic credentials: the account is read on every request (a deleted or disabled
    # account, a changed password take effect at once), plus the connection's reset.
    alice = await signed_up(client, "alice")
    images = chain("pinned")
    await alice.push("alice/app", "latest", images)
    headers: dict[str, Any] = alice.basic
    path = f"/v1/images/{images[-1].image_id}/layer"
    statements = await statements_of(client, round_trips, "GET", path, headers)
    assert len(statements) == 2, statements
    assert "FROM users" in statements[0]
