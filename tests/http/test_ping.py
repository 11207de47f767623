from __future__ import annotations

import pytest

from tests.conftest import Client


@pytest.mark.parametrize("path", ["/v1/_ping", "/_ping"])
async def test_ping(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["X-Docker-Registry-Version"] == "0.6.0"
    assert resp.headers["X-Docker-Registry-Standalone"] == "false"
    assert await resp.json() is True


@pytest.mark.parametrize("path", ["/v2/", "/v2"])
async def test_v2_base_answers_200_with_the_api_version(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert await resp.json() == {}


async def test_unknown_path_is_a_json_404(client: Client) -> None:
    resp = await client.get("/v1/nothing-here")
    assert resp.status == 404
    assert await resp.json() == {"error": "Not Found"}


async def test_request_id_is_returned_or_generated(client: Client) -> None:
    resp = await client.get("/v1/_ping", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    resp = await client.get("/v1/_ping", headers={"X-Request-Id": "bad id\twith junk"})
    assert resp.headers["X-Request-Id"] != "bad id\twith junk"
    assert len(resp.headers["X-Request-Id"]) == 16
