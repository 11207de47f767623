"""Issue: hostile input answered 500 with a logged traceback, several without credentials:
deeply nested JSON, NaN/Infinity, NUL and lone surrogates in JSON bodies, NUL in query
parameters, undecodable bytes in Authorization or checksum headers, a NUL in a Basic
username. Each is now a 400 with a message that says what is wrong, and nothing is stored."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from registryd.config import Settings
from tests.conftest import Client
from tests.security.token_mode import client, settings  # token mode: real users
from tests.security.v1_support import chain, declare, registry, stored
from tests.support.docker_v1 import DockerV1
from tests.support.v2client import V2Client, image_manifest

__all__ = ["client", "settings"]  # the fixtures

ID = chain("hostile")[0].image_id
NESTED = "JSON nested deeper than 64 levels"
BAD_STRING = "JSON string contains NUL or a lone surrogate"

# (JSON text of a hostile value, the reason it is refused)
HOSTILE_VALUES = [
    ("NaN", "NaN is not a JSON number"),
    ("Infinity", "Infinity is not a JSON number"),
    ("-Infinity", "-Infinity is not a JSON number"),
    ("1e999", "1e999 is out of range for a JSON number"),
    ('"a\\u0000b"', BAD_STRING),
    ('"a\\ud800b"', BAD_STRING),
    ('"\\udc00"', BAD_STRING),
    ('{"\\u0000": 1}', BAD_STRING),
]


def nested_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


# Each JSON endpoint: (method, path, auth, a body with the hostile value at its free spot,
# its body limit, how its 400 body names the reason).
Body = Callable[[str], str]
ENDPOINTS: dict[str, tuple[str, str, bool, Body, int]] = {
    "sign-up": (
        "POST",
        "/v1/users/",
        False,
        lambda v: f'{{"username": "mallory", "password": "secret-pw", "email": {v}}}',
        16 * 1024,
    ),
    "account": ("PUT", "/v1/users/alice/", True, lambda v: f'{{"email": {v}}}', 16 * 1024),
    "declare": (
        "PUT",
        "/v1/repositories/alice/app/",
        True,
        lambda v: f'[{{"id": "{ID}", "checksum": {v}}}]',
        64 * 1024,
    ),
    "declare more": (
        "PUT",
        "/v1/repositories/alice/app/images",
        True,
        lambda v: f'[{{"id": "{ID}", "checksum": {v}}}]',
        64 * 1024,
    ),
    "properties": (
        "PUT",
        "/v1/repositories/alice/app/properties",
        True,
        lambda v: f'{{"access": "private", "x": {v}}}',
        1024,
    ),
    "image json": (
        "PUT",
        f"/v1/images/{ID}/json",
        True,
        lambda v: f'{{"id": "{ID}", "comment": {v}}}',
        64 * 1024,
    ),
}


@pytest.fixture
async def app_repository(alice: DockerV1) -> None:
    """alice/app exists and declares ID, so each endpoint gets as far as parsing."""
    status, _, _ = await declare(alice, "alice/app", [ID])
    assert status == 200


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("shape", ["list", "object", *[v for v, _ in HOSTILE_VALUES]])
async def test_v1_json_endpoints_refuse_hostile_json(
    client: Client,
    db: asyncpg.Connection,
    settings: Settings,
    alice: DockerV1,
    app_repository: None,
    caplog: pytest.LogCaptureFixture,
    endpoint: str,
    shape: str,
) -> None:
    method, path, authenticated, body_of, limit = ENDPOINTS[endpoint]
    if shape in ("list", "object"):
        depth = min(100_000, limit // 6)  # as deep as the body limit allows
        body = nested_list(depth) if shape == "list" else nested_object(depth)
        reasons = {NESTED}
    else:
        body = body_of(shape)
        reasons = {reason for value, reason in HOSTILE_VALUES if value == shape}
    before = await stored(db, settings)
    headers = alice.basic if authenticated else {}
    resp = await client.request(method, path, data=body.encode(), headers=headers)
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    if endpoint == "declare" and shape in ("list", "object") and depth < 65:
        reasons = set()
    # A shape an endpoint refuses for what it is, before nesting matters, is fine too.
    assert error in reasons or shape in ("list", "object"), error
    assert await stored(db, settings) == before
    no_errors_logged(caplog)


@pytest.mark.parametrize("body", ["[" * 500 + "]" * 500, "NaN", '"\\u0000"'])
async def test_tag_body_refuses_hostile_json(
    client: Client, alice: DockerV1, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    images = chain("tagged")
    await alice.push("alice/app", "latest", images)
    resp = await client.put(
        "/v1/repositories/alice/app/tags/x", data=body.encode(), headers=alice.basic
    )
    assert resp.status == 400
    assert await resp.json() == {"error": "Invalid data"}
    no_errors_logged(caplog)


async def test_deep_nesting_is_refused_on_anonymous_sign_up(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """The cheapest one: no credentials, the largest body the endpoint takes."""
    resp = await client.post("/v1/users/", data=nested_list(8000).encode())
    assert resp.status == 400
    assert await resp.json() == {"error": NESTED}
    no_errors_logged(caplog)


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ('"annotations": {"a": NaN}', "NaN is not a JSON number"),
        ('"annotations": {"a": -1e400}', "-1e400 is out of range for a JSON number"),
        ('"annotations": {"a": "\\u0000"}', BAD_STRING),
        ('"annotations": {"\\ud800": "x"}', BAD_STRING),
        ('"artifactType": "a\\udfffb"', BAD_STRING),
        ('"annotations": ' + nested_object(1000), NESTED),
    ],
)
async def test_manifests_refuse_hostile_json(
    client: Client,
    db: asyncpg.Connection,
    alice: DockerV1,
    caplog: pytest.LogCaptureFixture,
    where: str,
    reason: str,
) -> None:
    v2 = V2Client(client, alice.basic)
    config, layer = b'{"os": "linux"}', b"layer bytes"
    for blob in (config, layer):
        await v2.push_blob("alice/app", blob)
    manifest = image_manifest(config, [layer]).decode()
    hostile = manifest[: manifest.rindex("}")] + "," + where + "}"
    status, body, _ = await v2.push_manifest("alice/app", "latest", hostile.encode())
    assert status == 400
    (error,) = json.loads(body)["errors"]
    assert error["code"] == "MANIFEST_INVALID"
    assert error["detail"] == reason
    assert await db.fetchval("SELECT count(*) FROM v2_manifests") == 0
    no_errors_logged(caplog)


@pytest.mark.parametrize(
    ("path", "status", "expected"),
    [
        ("/v1/search?q=a%00b", 400, {"error": "Query parameter q must not contain NUL"}),
        ("/v2/alice/app/tags/list?last=a%00b", 400, "TAG_INVALID"),
        ("/v2/_catalog?last=a%00b", 400, "NAME_INVALID"),
        (f"/v2/alice/app/referrers/sha256:{'a' * 64}?artifactType=a%00b", 400, "UNSUPPORTED"),
    ],
)
async def test_nul_in_query_parameters_is_refused(
    client: Client,
    alice: DockerV1,
    caplog: pytest.LogCaptureFixture,
    path: str,
    status: int,
    expected: Any,
) -> None:
    await V2Client(client, alice.basic).push_blob("alice/app", b"x")
    resp = await client.get(path, headers=alice.basic)
    assert resp.status == status
    body = await resp.json()
    if isinstance(expected, str):
        assert body["errors"][0]["code"] == expected
    else:
        assert body == expected
    no_errors_logged(caplog)


async def raw_request(client: Client, head: bytes) -> tuple[int, Any]:
    """Send bytes aiohttp's client would not (non-UTF-8 header values); status and JSON body."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head + b"Connection: close\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = response.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(body)


@pytest.mark.parametrize("path", ["/v1/users/", "/v2/", "/v2/token", "/v1/search"])
async def test_undecodable_authorization_header_is_refused(
    client: Client, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    head = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n".encode()
    status, body = await raw_request(client, head + b"Authorization: Basic \xff\xfe\xfd\r\n")
    assert status == 400
    if path.startswith("/v2"):
        assert body["errors"][0]["detail"] == "The Authorization header must be printable ASCII"
    else:
        assert body == {"error": "The Authorization header must be printable ASCII"}
    no_errors_logged(caplog)


@pytest.mark.parametrize("path", ["/v1/users/", "/v2/token", "/v1/search"])
async def test_nul_in_a_basic_username_is_refused(
    client: Client, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    credentials = base64.b64encode(b"ali\x00ce:secret-pw").decode()
    resp = await client.get(path, headers={"Authorization": "Basic " + credentials})
    assert resp.status == 400
    body = await resp.json()
    reason = "Basic credentials: the username holds control characters"
    assert reason in json.dumps(body)
    no_errors_logged(caplog)


async def test_undecodable_checksum_header_is_refused(
    client: Client,
    db: asyncpg.Connection,
    settings: Settings,
    alice: DockerV1,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (image,) = chain("checksum")[:1]
    _, _, token = await declare(alice, "alice/app", [image.image_id])
    alice_registry = registry(alice, token)
    assert (await alice_registry.put_json(image))[0] == 200
    assert (await alice_registry.put_layer(image.image_id, image.layer))[0] == 200
    before = await stored(db, settings)
    head = (
        f"PUT /v1/images/{image.image_id}/checksum HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Token {token}\r\n"
    ).encode()
    header = b"X-Docker-Checksum: tarsum+sha256:\xff\xfe\r\n"
    assert await raw_request(client, head + header) == (400, {"error": "Invalid checksum"})
    assert await stored(db, settings) == before
    no_errors_logged(caplog)


async def test_undecodable_user_agent_is_left_out_of_tag_metadata(
    client: Client, db: asyncpg.Connection, alice: DockerV1, caplog: pytest.LogCaptureFixture
) -> None:
    images = chain("agent")
    await alice.push("alice/app", "latest", images)
    body = json.dumps(images[-1].image_id).encode()
    head = (
        f"PUT /v1/repositories/alice/app/tags/odd HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: {alice.basic['Authorization']}\r\n"
        "User-Agent: docker/1.9\xff go/go1.4\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head + body)
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert response.startswith(b"HTTP/1.1 200")
    metadata = await db.fetchval("SELECT metadata FROM v1_tags WHERE tag = 'odd'")
    assert json.loads(metadata)["docker_go_version"] == "go1.4"
    assert json.loads(metadata)["docker_version"] is None
    no_errors_logged(caplog)
