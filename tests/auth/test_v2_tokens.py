"""The Docker token flow on the v2 API: challenges, the token endpoint, and every refusal."""

from __future__ import annotations

import re
import time
import warnings
from typing import Any

import jwt
import pytest

from registryd.auth import bearer
from registryd.config import Settings
from tests.conftest import Client
from tests.support.docker_v1 import DockerV1, basic
from tests.support.v2client import V2Client


def challenge(headers: Any) -> dict[str, str]:
    value = headers["WWW-Authenticate"]
    assert value.startswith("Bearer ")
    return {key: f'"{text}"' for key, text in re.findall(r'(\w+)="([^"]*)"', value)}


async def token_for(client: Client, scope: str, user: DockerV1 | None = None) -> dict[str, Any]:
    headers = user.basic if user is not None else {}
    resp = await client.get(
        "/v2/token", params={"service": bearer.SERVICE, "scope": scope}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    assert body["token"] == body["access_token"]
    return body


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def bearer_client(client: Client, token: str) -> V2Client:
    return V2Client(client, {"Authorization": f"Bearer {token}"})


async def test_base_challenges_anonymous_callers(client: Client) -> None:
    resp = await client.get("/v2/")
    assert resp.status == 401
    fields = challenge(resp.headers)
    assert fields["realm"] == f'"http://{resp.url.host}:{resp.url.port}/v2/token"'
    assert fields["service"] == f'"{bearer.SERVICE}"'
    assert (await resp.json())["errors"][0]["code"] == "UNAUTHORIZED"


async def test_push_with_a_token_of_the_owner(client: Client, alice: DockerV1) -> None:
    body = await token_for(client, "repository:alice/app:pull,push", alice)
    assert body["expires_in"] == bearer.TOKEN_TTL_SECONDS
    token = body["token"]
    assert claims(token)["access"] == [
        {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}
    ]
    assert (await client.get("/v2/", headers={"Authorization": f"Bearer {token}"})).status == 200
    await bearer_client(client, token).push_image("alice/app", "v1", [b"layer"])


async def test_anonymous_pull_of_public_but_no_push(client: Client, alice: DockerV1) -> None:
    owner = (await token_for(client, "repository:alice/app:pull,push", alice))["token"]
    await bearer_client(client, owner).push_image("alice/app", "v1", [b"layer"])
    anonymous = (await token_for(client, "repository:alice/app:pull,push"))["token"]
    assert claims(anonymous)["access"][0]["actions"] == ["pull"]
    status, _, _ = await bearer_client(client, anonymous).call("GET", "/v2/alice/app/manifests/v1")
    assert status == 200
    status, _, headers = await bearer_client(client, anonymous).call(
        "POST", "/v2/alice/app/blobs/uploads/"
    )
    assert status == 401
    fields = challenge(headers)
    assert fields["scope"] == '"repository:alice/app:pull,push"'
    assert fields["error"] == '"insufficient_scope"'


async def test_other_users_get_no_push_on_alices_repository(
    client: Client, alice: DockerV1, bob: DockerV1
) -> None:
    token = (await token_for(client, "repository:alice/app:push,delete", bob))["token"]
    assert claims(token)["access"][0]["actions"] == []
    status, _, _ = await bearer_client(client, token).call("POST", "/v2/alice/app/blobs/uploads/")
    assert status == 401
    # Basic credentials straight on the v2 API: a known user without permission is 403.
    resp = await client.post("/v2/alice/app/blobs/uploads/", headers=bob.basic)
    assert resp.status == 403
    assert (await resp.json())["errors"][0]["code"] == "DENIED"
    resp = await client.post("/v2/alice/app/blobs/uploads/", headers=alice.basic)
    assert resp.status == 202


async def test_token_endpoint_refuses_wrong_passwords(client: Client, alice: DockerV1) -> None:
    resp = await client.get(
        "/v2/token",
        params={"scope": "repository:alice/app:pull"},
        headers={"Authorization": basic("alice", "wrong")},
    )
    assert resp.status == 401


def forged(settings: Settings, **changes: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": bearer.ISSUER,
        "sub": "alice",
        "aud": bearer.SERVICE,
        "iat": now,
        "exp": now + 60,
        "access": [{"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}],
    }
    algorithm = changes.pop("algorithm", "HS256")
    key = changes.pop("key", settings.token_secret)
    payload.update(changes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(payload, key, algorithm=algorithm)


@pytest.mark.parametrize(
    "change",
    [
        {"exp": int(time.time()) - 10},
        {"aud": "another-registry"},
        {"iss": "someone-else"},
        {"algorithm": "HS512"},
        {"key": "not-our-secret-" + "y" * 32},
        {"access": [{"type": "repository", "name": "bob_b/app", "actions": ["pull", "push"]}]},
    ],
    ids=["expired", "audience", "issuer", "algorithm", "signature", "other-repository"],
)
async def test_bad_tokens_are_refused(
    client: Client, settings: Settings, alice: DockerV1, change: dict[str, Any]
) -> None:
    token = forged(settings, **change)
    resp = await client.post(
        "/v2/alice/app/blobs/uploads/", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 401
    assert "WWW-Authenticate" in resp.headers


async def test_unsigned_token_is_refused(client: Client, settings: Settings) -> None:
    good = forged(settings)
    header, payload, _ = good.split(".")
    none_header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    for token in (f"{none_header}.{payload}.", f"{header}.{payload}.", "garbage"):
        resp = await client.get(
            "/v2/alice/app/tags/list", headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status == 401


async def test_catalog_lists_only_readable_repositories(
    client: Client, alice: DockerV1, db: Any
) -> None:
    token = (await token_for(client, "repository:alice/app:pull,push", alice))["token"]
    await bearer_client(client, token).push_blob("alice/app", b"x")
    token = (await token_for(client, "repository:alice/secret:pull,push", alice))["token"]
    await bearer_client(client, token).push_blob("alice/secret", b"x")
    await db.execute("UPDATE repositories SET is_public = false WHERE name = 'secret'")
    resp = await client.get("/v2/_catalog", headers=alice.basic)
    assert (await resp.json())["repositories"] == ["alice/app", "alice/secret"]
    anonymous = (await token_for(client, "repository:alice/app:pull"))["token"]
    resp = await client.get("/v2/_catalog", headers={"Authorization": f"Bearer {anonymous}"})
    assert (await resp.json())["repositories"] == ["alice/app"]
