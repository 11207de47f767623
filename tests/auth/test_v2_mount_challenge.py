"""Cross-repository mounts under token auth: the challenge asks for the source too.

Without ``repository:<from>:pull`` in the challenge, the token a client fetches
cannot read the source, and every mount silently becomes a full re-upload.
"""

from __future__ import annotations

from tests.auth.test_v2_tokens import bearer_client, challenge, claims, token_for
from tests.conftest import Client
from tests.support.content import sha256
from tests.support.docker_v1 import DockerV1

LAYER = b"shared base layer" * 100


async def test_anonymous_challenge_carries_no_error(client: Client, alice: DockerV1) -> None:
    # RFC 6750 §3.1: no credentials at all is not an invalid token.
    resp = await client.post("/v2/alice/app/blobs/uploads/")
    assert resp.status == 401
    assert "error" not in challenge(resp.headers)
    resp = await client.post(
        "/v2/alice/app/blobs/uploads/", headers={"Authorization": "Bearer not-a-jwt"}
    )
    assert resp.status == 401
    assert challenge(resp.headers)["error"] == '"invalid_token"'


async def test_mount_challenge_names_the_source_scope(client: Client, alice: DockerV1) -> None:
    base = (await token_for(client, "repository:alice/base:pull,push", alice))["token"]
    digest = await bearer_client(client, base).push_blob("alice/base", LAYER)
    mount = f"/v2/alice/app/blobs/uploads/?mount={digest}&from=alice/base"

    resp = await client.post(mount)
    assert resp.status == 401
    assert challenge(resp.headers)["scope"] == (
        '"repository:alice/app:pull,push repository:alice/base:pull"'
    )
    # What docker/containerd do next: a token for the target alone first...
    target_only = (await token_for(client, "repository:alice/app:pull,push", alice))["token"]
    status, _, headers = await bearer_client(client, target_only).call("POST", mount)
    assert status == 401
    assert challenge(headers)["error"] == '"insufficient_scope"'
    assert "repository:alice/base:pull" in challenge(headers)["scope"]
    # ...then one for every scope the challenge named: the mount succeeds.
    both = (
        await token_for(client, "repository:alice/app:pull,push repository:alice/base:pull", alice)
    )["token"]
    status, _, headers = await bearer_client(client, both).call("POST", mount)
    assert status == 201
    assert headers["Docker-Content-Digest"] == digest == sha256(LAYER)


async def test_refused_source_falls_back_to_an_upload_without_a_loop(
    client: Client, alice: DockerV1, bob: DockerV1
) -> None:
    """bob may not read alice's private repository: one session, never a second 401."""
    token = (await token_for(client, "repository:alice/secret:pull,push", alice))["token"]
    digest = await bearer_client(client, token).push_blob("alice/secret", LAYER)
    resp = await client.put(
        "/v1/repositories/alice/secret/properties",
        json={"access": "private"},
        headers=alice.basic,
    )
    assert resp.status == 200, await resp.text()
    scopes = "repository:bob_b/app:pull,push repository:alice/secret:pull"
    bobs = (await token_for(client, scopes, bob))["token"]
    assert claims(bobs)["access"][1] == {
        "type": "repository",
        "name": "alice/secret",
        "actions": [],
    }
    status, _, headers = await bearer_client(client, bobs).call(
        "POST", f"/v2/bob_b/app/blobs/uploads/?mount={digest}&from=alice/secret"
    )
    assert status == 202
    assert "/v2/bob_b/app/blobs/uploads/" in headers["Location"]
