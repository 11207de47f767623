"""v1 tags (v1 spec §5.8) and their bad inputs."""

from __future__ import annotations

import json

import asyncpg
import pytest

from registryd.config import Settings
from tests.conftest import Client
from tests.support.images import make_image
from tests.support.snapshot import snapshot
from tests.support.v1client import V1Client

IMAGE = make_image("tagged", b"layer bytes")
OTHER = make_image("retagged", b"other layer")


@pytest.fixture
async def pushed(client: Client) -> None:
    for image in (IMAGE, OTHER):
        assert await V1Client(client).push_image(image) == "pushed"


async def put_tag(client: Client, path: str, body: bytes | str) -> tuple[int, object]:
    resp = await client.put(path, data=body, headers={"Content-Type": "application/json"})
    return resp.status, await resp.json()


@pytest.mark.usefixtures("pushed")
async def test_tag_lifecycle(client: Client) -> None:
    path = "/v1/repositories/alice/app/tags"
    assert await put_tag(client, path + "/latest", json.dumps(IMAGE.image_id)) == (200, True)
    assert await put_tag(client, path + "/v1.0", json.dumps(IMAGE.image_id)) == (200, True)
    resp = await client.get(path + "/latest")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == IMAGE.image_id
    resp = await client.get(path)
    assert await resp.json() == {"latest": IMAGE.image_id, "v1.0": IMAGE.image_id}
    # Re-pointing a tag is allowed.
    assert await put_tag(client, path + "/latest", json.dumps(OTHER.image_id)) == (200, True)
    assert await (await client.get(path + "/latest")).json() == OTHER.image_id
    resp = await client.delete(path + "/latest")
    assert resp.status == 200
    assert await resp.json() is True
    resp = await client.get(path + "/latest")
    assert resp.status == 404
    assert await resp.json() == {"error": "Tag not found"}
    assert await (await client.get(path)).json() == {"v1.0": IMAGE.image_id}
    assert (await client.delete(path + "/latest")).status == 404


@pytest.mark.usefixtures("pushed")
async def test_one_segment_names_are_library(client: Client) -> None:
    """docker writes tags to /repositories/foo/... and reads /repositories/library/foo/..."""
    assert await put_tag(
        client, "/v1/repositories/foo/tags/latest", json.dumps(IMAGE.image_id)
    ) == (
        200,
        True,
    )
    resp = await client.get("/v1/repositories/library/foo/tags/latest")
    assert await resp.json() == IMAGE.image_id
    assert await (await client.get("/v1/repositories/foo/tags")).json() == {
        "latest": IMAGE.image_id
    }


@pytest.mark.usefixtures("pushed")
async def test_tag_metadata_comes_from_the_user_agent(
    client: Client, db: asyncpg.Connection
) -> None:
    resp = await client.put(
        "/v1/repositories/alice/app/tags/latest",
        data=json.dumps(IMAGE.image_id),
        headers={
            "User-Agent": "docker/1.9.1 go/go1.4.3 git-commit/a34a1d5 kernel/4.1 "
            "os/linux arch/amd64"
        },
    )
    assert resp.status == 200
    meta = json.loads(await db.fetchval("SELECT metadata FROM v1_tags"))
    assert meta["docker_version"] == "1.9.1"
    assert meta["arch"] == "amd64"
    assert isinstance(meta["last_update"], int)


async def test_unknown_repository_and_tag(client: Client) -> None:
    resp = await client.get("/v1/repositories/alice/nothing/tags")
    assert resp.status == 404
    assert await resp.json() == {"error": "Repository not found"}
    assert (await client.get("/v1/repositories/alice/nothing/tags/latest")).status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/v1/repositories/alice/Upper/tags",
        "/v1/repositories/alice/Upper/tags/latest",
        "/v1/repositories/ab/app/tags",
        "/v1/repositories/alice/app/tags/.hidden",
        "/v1/repositories/alice/app%24/tags",
    ],
)
async def test_reads_of_invalid_names_are_404(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert "error" in await resp.json()


@pytest.mark.usefixtures("pushed")
@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        (
            "/v1/repositories/alice/Upper/tags/latest",
            json.dumps(IMAGE.image_id),
            400,
            "Invalid repository name",
        ),
        (
            "/v1/repositories/alice/tags/tags/latest",
            json.dumps(IMAGE.image_id),
            400,
            "reserved word",
        ),
        (
            "/v1/repositories/abc/app/tags/latest",
            json.dumps(IMAGE.image_id),
            400,
            "Invalid repository name",
        ),
        (
            "/v1/repositories/alice/app/tags/-bad",
            json.dumps(IMAGE.image_id),
            400,
            "Invalid tag name",
        ),
        (
            "/v1/repositories/alice/app/tags/" + "x" * 129,
            json.dumps(IMAGE.image_id),
            400,
            "Invalid tag name",
        ),
        ("/v1/repositories/alice/app/tags/latest", IMAGE.image_id, 400, "Invalid data"),  # unquoted
        (
            "/v1/repositories/alice/app/tags/latest",
            json.dumps([IMAGE.image_id]),
            400,
            "Invalid data",
        ),
        ("/v1/repositories/alice/app/tags/latest", b"\xff", 400, "Invalid data"),
        ("/v1/repositories/alice/app/tags/latest", json.dumps("f" * 64), 404, "Image not found"),
        ("/v1/repositories/alice/app/tags/latest", json.dumps("../../x"), 404, "Image not found"),
        ("/v1/repositories/alice/app/tags/latest", json.dumps("x" * 2000), 413, "larger than"),
    ],
)
async def test_bad_tag_writes_store_nothing(
    client: Client,
    db: asyncpg.Connection,
    settings: Settings,
    path: str,
    body: bytes | str,
    status: int,
    error: str,
) -> None:
    before = await snapshot(db, settings)
    got_status, got_body = await put_tag(client, path, body)
    assert got_status == status
    assert error in got_body["error"]  # type: ignore[index]
    assert await snapshot(db, settings) == before


async def test_tag_cannot_point_at_an_incomplete_image(
    client: Client, db: asyncpg.Connection, settings: Settings
) -> None:
    image = make_image("half-pushed", b"layer")
    await client.put(f"/v1/images/{image.image_id}/json", data=image.json)
    before = await snapshot(db, settings)
    assert await put_tag(
        client, "/v1/repositories/alice/app/tags/latest", json.dumps(image.image_id)
    ) == (
        400,
        {"error": "Image is being uploaded, retry later"},
    )
    assert await snapshot(db, settings) == before
