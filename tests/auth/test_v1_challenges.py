"""A v1 401 names the challenge of the route that refused, never one guessed from the path.

v1 spec §2: the registry side (images, tags) takes tokens, the index's repository calls
take Basic or a token, the rest (users, search) Basic.
"""

from __future__ import annotations

from tests.auth.conftest import signed_up
from tests.conftest import Client

BASIC = 'Basic realm="registryd"'
IMAGE_ID = "a" * 64


async def test_repository_named_like_a_resource_gets_the_index_challenge(client: Client) -> None:
    # "tagsy" and "images" contain the words of the registry side's URLs.
    for name in ("tagsy", "alice/tagsy", "tags/x", "imagesy"):
        for method, path in (
            ("PUT", f"/v1/repositories/{name}/"),
            ("PUT", f"/v1/repositories/{name}/images"),
            ("DELETE", f"/v1/repositories/{name}/"),
        ):
            resp = await client.request(method, path, json=[])
            assert resp.status == 401, (method, path)
            assert resp.headers["WWW-Authenticate"] == BASIC + ", Token", (method, path)


async def test_registry_side_routes_get_the_token_challenge(client: Client) -> None:
    await signed_up(client, "alice")  # the namespace exists; the caller is anonymous
    for method, path in (
        ("PUT", "/v1/repositories/alice/tagsy/tags/latest"),
        ("PUT", "/v1/repositories/tagsy/tags/latest"),
        ("PUT", f"/v1/images/{IMAGE_ID}/json"),
    ):
        resp = await client.request(method, path, json=IMAGE_ID)
        assert resp.status == 401, (method, path)
        assert resp.headers["WWW-Authenticate"] == "Token", (method, path)


async def test_users_endpoint_gets_the_basic_challenge(client: Client) -> None:
    resp = await client.get("/v1/users/")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == BASIC
