"""GET /v1/search (v1 spec §5.15)."""

from __future__ import annotations

import pytest

from tests.conftest import Client
from tests.support.docker_v1 import DockerV1


@pytest.fixture
async def repositories(alice: DockerV1) -> None:
    for i in range(30):
        status, _, _ = await alice.index("PUT", f"/v1/repositories/alice/tool-{i:02d}/", [])
        assert status == 200
    await alice.index("PUT", "/v1/repositories/alice/other/", [])


@pytest.mark.usefixtures("repositories")
async def test_search_shape_and_pages(client: Client) -> None:
    resp = await client.get("/v1/search", params={"q": "TOOL", "n": "25"})
    assert resp.status == 200
    body = await resp.json()
    assert body["query"] == "TOOL"
    assert body["num_results"] == 25
    assert body["num_pages"] == 2
    assert body["page"] == 1
    assert body["page_size"] == 25
    assert body["results"][0] == {
        "name": "alice/tool-00",
        "description": None,
        "star_count": 0,
        "is_official": False,
        "is_trusted": False,
        "is_automated": False,
    }
    body = await (await client.get("/v1/search", params={"q": "tool", "page": "2"})).json()
    assert [r["name"] for r in body["results"]] == [f"alice/tool-{i}" for i in range(25, 30)]


@pytest.mark.usefixtures("repositories")
@pytest.mark.parametrize(
    ("params", "page_size", "count"),
    [
        ({"q": "tool", "n": "1000000000"}, 100, 30),
        ({"q": "tool", "n": "0"}, 1, 1),
        ({"q": "tool", "n": "-5"}, 1, 1),
        ({"q": "tool", "page": "999999999999"}, 25, 0),
        ({"q": ""}, 25, 25),
        ({"q": "100%_"}, 25, 0),  # LIKE wildcards are literal
    ],
)
async def test_search_clamps(
    client: Client, params: dict[str, str], page_size: int, count: int
) -> None:
    resp = await client.get("/v1/search", params=params)
    assert resp.status == 200
    body = await resp.json()
    assert body["page_size"] == page_size
    assert body["num_results"] == count


async def test_search_bad_parameters(client: Client) -> None:
    resp = await client.get("/v1/search", params={"q": "x", "n": "many"})
    assert resp.status == 400
    assert "n must be an integer" in (await resp.json())["error"]


async def test_search_with_bad_credentials_is_401(client: Client) -> None:
    resp = await client.get(
        "/v1/search", params={"q": "x"}, headers={"Authorization": "Basic Zm9vOmJhcg=="}
    )
    assert resp.status == 401
