"""The per-process cache of verified bearer tokens grants nothing a fresh check would not."""

from __future__ import annotations

import asyncio
import time

import pytest

from registryd.auth import bearer
from registryd.auth.credentials import VERIFIED_TOKENS
from registryd.config import Settings
from registryd.errors import Unauthenticated
from registryd.names import RepositoryName
from tests.auth.conftest import signed_up
from tests.auth.test_v2_tokens import forged, token_for
from tests.conftest import Client
from tests.support.v2client import V2Client

SECRET = b"s" * 32
APP = RepositoryName.parse("alice", "app")


def issued(now: float, name: str = "alice/app") -> str:
    return bearer.issue(SECRET, "alice", [(name, ["pull"])], now)


def test_a_cached_token_is_refused_once_expired() -> None:
    tokens = bearer.VerifiedTokens()
    now = time.time()
    token = issued(now)
    subject, grants, _ = tokens.verify(SECRET, token, now)
    assert (subject, [g.repository for g in grants]) == ("alice", [APP])
    assert tokens.verify(SECRET, token, now + bearer.TOKEN_TTL_SECONDS - 1)[0] == "alice"
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.verify(SECRET, token, now + bearer.TOKEN_TTL_SECONDS)
    with pytest.raises(Unauthenticated):  # and stays refused, the entry is gone
        tokens.verify(SECRET, token, now + bearer.TOKEN_TTL_SECONDS + 1)


def test_a_cached_token_is_refused_under_another_secret() -> None:
    tokens = bearer.VerifiedTokens()
    token = issued(time.time())
    tokens.verify(SECRET, token)
    with pytest.raises(Unauthenticated, match="Invalid"):
        tokens.verify(b"another-secret-" + b"x" * 32, token)


def test_a_tampered_token_is_no_cache_hit() -> None:
    tokens = bearer.VerifiedTokens()
    token = issued(time.time())
    tokens.verify(SECRET, token)
    header, _, signature = token.split(".")
    other = issued(time.time(), "bob_b/app").split(".")[1]
    for tampered in (f"{header}.{other}.{signature}", token + "x", token[:-1]):
        with pytest.raises(Unauthenticated):
            tokens.verify(SECRET, tampered)


def test_the_cache_is_bounded_and_callers_get_their_own_grants() -> None:
    tokens = bearer.VerifiedTokens(max_entries=3)
    now = time.time()
    all_tokens = [issued(now - i) for i in range(5)]
    for token in all_tokens:
        tokens.verify(SECRET, token, now)
    assert len(tokens._entries) == 3
    assert list(tokens._entries) == all_tokens[2:]
    first = tokens.verify(SECRET, all_tokens[-1], now)[1]
    first.clear()
    assert len(tokens.verify(SECRET, all_tokens[-1], now)[1]) == 1


async def test_a_token_for_one_repository_reads_no_other_through_the_cache(
    client: Client,
) -> None:
    alice = await signed_up(client, "alice")
    bob = await signed_up(client, "bob_b")
    pusher = V2Client(
        client,
        {
            "Authorization": "Bearer "
            + (await token_for(client, "repository:alice/app:pull,push", alice))["token"]
        },
    )
    layer_digest = await pusher.push_blob("alice/app", b"alice's layer")
    resp = await client.put(
        "/v1/repositories/alice/app/properties", json={"access": "private"}, headers=alice.basic
    )
    assert resp.status == 200
    token = (await token_for(client, "repository:bob_b/app:pull", bob))["token"]
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(2):  # the second time from the cache
        resp = await client.get("/v2/bob_b/app/tags/list", headers=headers)
        assert resp.status == 404  # granted, and the repository does not exist
        resp = await client.get(f"/v2/alice/app/blobs/{layer_digest}", headers=headers)
        assert resp.status == 401
        assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]


async def test_an_expired_token_is_refused_over_http_even_when_cached(
    client: Client, settings: Settings
) -> None:
    alice = await signed_up(client, "alice")
    pusher = V2Client(
        client,
        {
            "Authorization": "Bearer "
            + (await token_for(client, "repository:alice/app:pull,push", alice))["token"]
        },
    )
    await pusher.push_blob("alice/app", b"some layer")
    expires = int(time.time()) + 2
    token = forged(settings, exp=expires)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/v2/alice/app/tags/list", headers=headers)).status != 401
    assert token in VERIFIED_TOKENS._entries
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.01)  # the clock, not an ordering
    resp = await client.get("/v2/alice/app/tags/list", headers=headers)
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
