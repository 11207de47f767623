"""v1 tokens and their signing secret."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import stat
import time

import pytest
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.auth.secrets import load_token_secret
from registryd.auth.tokens import Grant, issue_token, parse_token_header, verify_token
from registryd.config import Settings
from registryd.errors import Unauthenticated
from registryd.names import RepositoryName
from tests.support.docker_v1 import DockerV1

SECRET = b"k" * 32
# Valid for longer than any test session: the module is imported when collection starts.
GRANT = Grant("alice", RepositoryName("alice", "app"), "write", int(time.time()) + 86400)


def test_round_trip() -> None:
    (fields,) = parse_token_header(issue_token(SECRET, GRANT))
    assert verify_token(SECRET, fields) == GRANT


def test_several_tokens_in_one_header() -> None:
    other = dataclasses.replace(GRANT, repository=RepositoryName("alice", "lib"), access="read")
    header = f"Token {issue_token(SECRET, GRANT)},{issue_token(SECRET, other)}"
    assert [verify_token(SECRET, f) for f in parse_token_header(header)] == [GRANT, other]


@pytest.mark.parametrize(
    "change",
    [
        {"access": "delete"},
        {"repository": "alice/lib"},
        {"user": "mallory"},
        {"expires": str(GRANT.expires + 3600)},
        {"signature": "AAAA"},
    ],
)
def test_any_altered_field_is_rejected(change: dict[str, str]) -> None:
    (fields,) = parse_token_header(issue_token(SECRET, GRANT))
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, {**fields, **change})


def test_other_secret_expired_and_incomplete_tokens_are_rejected() -> None:
    (fields,) = parse_token_header(issue_token(SECRET, GRANT))
    with pytest.raises(Unauthenticated):
        verify_token(b"o" * 32, fields)
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(SECRET, fields, now=GRANT.expires + 1)
    for missing in ("signature", "repository", "access", "expires"):
        with pytest.raises(Unauthenticated):
            verify_token(SECRET, {k: v for k, v in fields.items() if k != missing})


async def test_generated_secret_is_private_and_shared_by_replicas(
    settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    generated = dataclasses.replace(settings, token_secret=None)
    first = await aiohttp_client(create_app(generated))
    second = await aiohttp_client(create_app(generated))
    mode = (await asyncio.to_thread(generated.token_secret_file.stat)).st_mode
    assert stat.S_IMODE(mode) == 0o600
    alice = DockerV1(first, "alice", "secret-pw")
    assert await alice.login() == 201
    _, _, headers = await alice.index("PUT", "/v1/repositories/alice/app/", [])
    resp = await second.get(
        "/v1/repositories/alice/app/tags",
        headers={"Authorization": "Token " + headers["X-Docker-Token"]},
    )
    assert resp.status == 200  # the other replica accepts the token
    assert await asyncio.to_thread(load_token_secret, generated) == await asyncio.to_thread(
        load_token_secret, generated
    )


async def test_auth_mode_none_is_logged_loudly(
    settings: Settings, aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        await aiohttp_client(create_app(dataclasses.replace(settings, auth_mode="none")))
    assert any("AUTH_MODE=none" in r.message for r in caplog.records)
