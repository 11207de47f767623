"""Accounts: sign-up, docker login (both generations), updates (v1 spec §5.12, §9.3)."""

from __future__ import annotations

import dataclasses

import asyncpg
import pytest
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from tests.auth.conftest import ADMIN
from tests.conftest import Client
from tests.support.docker_v1 import MAGIC_EXISTS, DockerV1, basic
from tests.support.snapshot import snapshot


async def test_signup_then_login_like_docker_1_0_to_1_10(client: Client) -> None:
    docker = DockerV1(client, "carol", "carol-pw")
    resp = await client.post("/v1/users/", json={"username": "carol", "password": "carol-pw"})
    assert resp.status == 201
    assert await resp.json() == "User Created"
    # Logging in again: the magic 400, then a Basic GET.
    resp = await client.post(
        "/v1/users/", json={"username": "carol", "password": "anything", "auth": "", "email": ""}
    )
    assert resp.status == 400
    assert await resp.read() == MAGIC_EXISTS
    assert await docker.login() == 200


async def test_login_like_docker_1_11(client: Client, alice: DockerV1) -> None:
    resp = await client.get("/v1/users/", headers=alice.basic)
    assert resp.status == 200
    assert await resp.json() == "OK"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic("alice", "wrong-password"),
        basic("nobody_here", "secret-pw"),
        "Basic !!!not-base64!!!",
        "Basic " + "bm9jb2xvbg==",  # "nocolon"
        "Digest username=alice",
        'Token signature=forged,repository="alice/app",access=read,expires=9999999999',
    ],
)
async def test_login_refusals(client: Client, alice: DockerV1, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    resp = await client.get("/v1/users", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert "error" in await resp.json()


async def test_email_already_used_is_the_magic_400(client: Client, alice: DockerV1) -> None:
    resp = await client.post(
        "/v1/users",
        json={"username": "alice2", "password": "pw-pw-pw", "email": "ALICE@example.com"},
    )
    assert resp.status == 400
    assert await resp.read() == MAGIC_EXISTS


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "Invalid JSON"),
        (b"[]", "expected an object"),
        (b'{"password": "secret-pw"}', "Username must be"),
        (b'{"username": "ab", "password": "secret-pw"}', "Username must be"),
        (b'{"username": "Upper", "password": "secret-pw"}', "Username must be"),
        (b'{"username": "library", "password": "secret-pw"}', "reserved"),
        (b'{"username": "dave", "password": "1234"}', "at least 5"),
        (b'{"username": "dave", "password": 12345}', "at least 5"),
        (b'{"username": "dave", "password": "' + b"p" * 257 + b'"}', "at most 256"),
        (b'{"username": "dave", "password": "secret-pw", "email": "nope"}', "email"),
    ],
)
async def test_bad_signups_create_nothing(
    client: Client, db: asyncpg.Connection, settings: Settings, body: bytes, message: str
) -> None:
    await client.get("/v1/_ping")  # the app has started (and bootstrapped its admin)
    before = await snapshot(db, settings)
    users_before = await db.fetchval("SELECT count(*) FROM users")
    resp = await client.post("/v1/users/", data=body)
    assert resp.status == 400
    assert message in (await resp.json())["error"]
    assert await db.fetchval("SELECT count(*) FROM users") == users_before
    assert await snapshot(db, settings) == before


async def test_passwords_are_stored_as_argon2id(db: asyncpg.Connection, alice: DockerV1) -> None:
    stored = await db.fetchval("SELECT password_hash FROM users WHERE username = 'alice'")
    assert stored.startswith("$argon2id$")
    assert "secret-pw" not in stored


async def test_update_own_password(client: Client, alice: DockerV1) -> None:
    resp = await client.put(
        "/v1/users/alice/", json={"password": "new-secret"}, headers=alice.basic
    )
    assert resp.status == 204
    assert (await client.get("/v1/users/", headers=alice.basic)).status == 401
    assert (
        await client.get("/v1/users/", headers={"Authorization": basic("alice", "new-secret")})
    ).status == 200


async def test_update_refusals(client: Client, alice: DockerV1, bob: DockerV1) -> None:
    # Someone else's account: 403. Anonymous: 401. Bad values: 400.
    resp = await client.put("/v1/users/alice/", json={"password": "hijacked"}, headers=bob.basic)
    assert resp.status == 403
    resp = await client.put("/v1/users/alice/", json={"password": "hijacked"})
    assert resp.status == 401
    resp = await client.put("/v1/users/alice/", json={"email": "bad"}, headers=alice.basic)
    assert resp.status == 400
    resp = await client.put("/v1/users/alice/", data=b"{", headers=alice.basic)
    assert resp.status == 400
    resp = await client.put("/v1/users/alice/", json={}, headers=alice.basic)
    assert resp.status == 400
    resp = await client.put(
        "/v1/users/alice/", json={"email": "bob_b@example.com"}, headers=alice.basic
    )
    assert resp.status == 400  # taken by bob
    assert await alice.login() == 200  # nothing changed


async def test_admin_updates_any_account_and_unknown_is_404(
    client: Client, admin: DockerV1, alice: DockerV1
) -> None:
    resp = await client.put("/v1/users/alice/", json={"email": "a@b.example"}, headers=admin.basic)
    assert resp.status == 204
    resp = await client.put(
        "/v1/users/ghost_user/", json={"email": "g@b.example"}, headers=admin.basic
    )
    assert resp.status == 404


async def test_admin_is_bootstrapped_from_settings(client: Client) -> None:
    resp = await client.get("/v1/users/", headers={"Authorization": basic(*ADMIN)})
    assert resp.status == 200


async def test_signup_can_be_closed(settings: Settings, aiohttp_client: AiohttpClient) -> None:
    closed = await aiohttp_client(create_app(dataclasses.replace(settings, open_signup=False)))
    resp = await closed.post("/v1/users/", json={"username": "erin", "password": "secret-pw"})
    assert resp.status == 403
