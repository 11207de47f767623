"""Issue: name, tag and id grammars matched with ``$``, which also accepts a final newline:
``alice/app\\n`` and ``latest\\n`` were stored and listed, and an id or a username ending in
a newline was a 500. Every grammar is now a full match."""

from __future__ import annotations

import asyncpg
import pytest

from registryd.config import Settings
from registryd.errors import ImageIdInvalid, RepositoryNameInvalid, TagNameInvalid
from registryd.names import RepositoryName, parse_image_id, parse_tag
from tests.conftest import Client
from tests.security.token_mode import client, settings  # token mode: real users
from tests.security.v1_support import chain, stored
from tests.support.docker_v1 import DockerV1

__all__ = ["client", "settings"]  # the fixtures

ID = chain("newline")[0].image_id
DIGEST = "sha256:" + "a" * 64


def test_every_grammar_refuses_a_final_newline() -> None:
    with pytest.raises(ImageIdInvalid):
        parse_image_id(ID + "\n")
    with pytest.raises(TagNameInvalid):
        parse_tag("latest\n")
    with pytest.raises(RepositoryNameInvalid):
        RepositoryName.parse("alice", "app\n")
    with pytest.raises(RepositoryNameInvalid):
        RepositoryName.parse("alice\n", "app")
    with pytest.raises(RepositoryNameInvalid):
        RepositoryName.parse_oci("alice/app\n")


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PUT", "/v1/repositories/alice/app%0A/", b"[]", 400),
        ("PUT", "/v1/repositories/alice%0A/app/", b"[]", 400),
        ("PUT", "/v1/repositories/app%0A/", b"[]", 400),
        ("PUT", "/v1/repositories/alice/app/tags/latest%0A", f'"{ID}"'.encode(), 400),
        ("PUT", f"/v1/images/{ID}%0A/json", b"{}", 404),
        ("GET", f"/v1/images/{ID}%0A/json", None, 404),
        ("PUT", "/v1/repositories/alice/app/", f'[{{"id": "{ID}\\n"}}]'.encode(), 400),
    ],
)
async def test_v1_names_ending_in_a_newline_are_refused(
    client: Client,
    db: asyncpg.Connection,
    settings: Settings,
    alice: DockerV1,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
) -> None:
    before = await stored(db, settings)
    # With X-Docker-Token: true the connection used to drop (a newline in a header).
    headers = {**alice.basic, "X-Docker-Token": "true"}
    resp = await client.request(method, path, data=body, headers=headers)
    assert resp.status == status
    assert "error" in await resp.json()
    assert await stored(db, settings) == before


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        # No route takes a name with a newline: the spec's answer for an unknown name.
        ("/v2/alice/app%0A/manifests/latest", 404, "NAME_UNKNOWN"),
        ("/v2/alice/app/manifests/latest%0A", 400, "TAG_INVALID"),
        (f"/v2/alice/app/blobs/{DIGEST}%0A", 400, "DIGEST_INVALID"),
    ],
)
async def test_v2_names_ending_in_a_newline_are_refused(
    client: Client,
    db: asyncpg.Connection,
    settings: Settings,
    alice: DockerV1,
    path: str,
    status: int,
    code: str,
) -> None:
    before = await stored(db, settings)
    method = "GET" if "/blobs/" in path else "PUT"
    resp = await client.request(method, path, data=b"{}", headers=alice.basic)
    assert resp.status == status
    assert (await resp.json())["errors"][0]["code"] == code
    assert await stored(db, settings) == before


async def test_a_username_ending_in_a_newline_is_refused(
    client: Client, db: asyncpg.Connection
) -> None:
    resp = await client.post(
        "/v1/users/", json={"username": "mallory\n", "password": "secret-pw", "email": ""}
    )
    assert resp.status == 400
    assert await resp.json() == {"error": "Username must be 4 to 30 characters of a-z, 0-9 and _"}
    assert await db.fetchval("SELECT count(*) FROM users WHERE username LIKE 'mallory%'") == 0
    # In Basic credentials ("mallory\n:secret-pw") it is a malformed request, not a 500.
    resp = await client.get(
        "/v1/users/", headers={"Authorization": "Basic bWFsbG9yeQo6c2VjcmV0LXB3"}
    )
    assert resp.status == 400
    assert await resp.json() == {
        "error": "Basic credentials: the username holds control characters"
    }
