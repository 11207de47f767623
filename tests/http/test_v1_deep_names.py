"""v1 repository names have at most two segments; deeper ones get the invalid-name answer."""

from __future__ import annotations

import pytest

from tests.conftest import Client


@pytest.mark.parametrize(
    "path",
    [
        "/v1/repositories/alice/a/b/",
        "/v1/repositories/alice/a/b/images",
        "/v1/repositories/alice/a/b/tags/latest",
        "/v1/repositories/x/y/z/w/properties",
    ],
)
async def test_writes_to_a_three_segment_name_are_400(client: Client, path: str) -> None:
    resp = await client.put(path, data=b'"0123"')
    assert resp.status == 400
    body = await resp.json()
    assert "Invalid repository name" in body["error"]
    assert "two path segments" in body["error"]


async def test_reads_of_a_three_segment_name_are_404(client: Client) -> None:
    resp = await client.get("/v1/repositories/alice/a/b/tags")
    assert resp.status == 404
    resp = await client.get("/v1/repositories/alice/a/b/tags/latest")
    assert resp.status == 404


async def test_a_valid_path_with_a_wrong_method_is_still_405(client: Client) -> None:
    resp = await client.post("/v1/repositories/alice/app/tags/latest")
    assert resp.status == 405
    resp = await client.put("/v1/repositories/alice/app/")
    assert resp.status == 200
