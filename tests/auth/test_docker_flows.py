"""docker 1.x flows end to end with accounts and tokens (v1 spec §9), and their refusals."""

from __future__ import annotations

import json

import asyncpg

from registryd.config import Settings
from tests.conftest import Client
from tests.support.docker_v1 import DockerV1
from tests.support.images import V1Image, make_chain, random_bytes, tar_layer
from tests.support.snapshot import snapshot
from tests.support.v1client import V1Client


def chain(prefix: str) -> list[V1Image]:
    return make_chain(
        prefix,
        [
            tar_layer({"base": random_bytes(100_000, 20)}),
            tar_layer({"lib": random_bytes(300_000, 21)}),
            tar_layer({"app": b"print('hi')\n"}),
        ],
    )


async def test_push_into_own_namespace_pull_anonymously_and_as_owner(
    client: Client, alice: DockerV1, anonymous: DockerV1
) -> None:
    images = chain("alice-app")
    await alice.push("alice/app", "latest", images)
    expected = [(i.image_id, i.json, i.layer) for i in images]
    assert await anonymous.pull("alice/app", "latest") == expected
    assert await alice.pull("alice/app", "latest") == expected
    status, body, _ = await alice.index("GET", "/v1/repositories/alice/app/images")
    assert status == 200
    listed = json.loads(body)
    assert [entry["id"] for entry in listed] == [i.image_id for i in images]
    assert all(entry["checksum"].startswith("sha256:") for entry in listed)


async def test_token_headers(client: Client, alice: DockerV1) -> None:
    status, _, headers = await alice.index("PUT", "/v1/repositories/alice/app/", [])
    assert status == 200
    token = headers["X-Docker-Token"]
    assert token.startswith("signature=")
    assert 'repository="alice/app"' in token
    assert "access=write" in token
    assert headers["WWW-Authenticate"] == "Token " + token
    assert headers["X-Docker-Endpoints"] == f"{client.host}:{client.port}"
    # Without X-Docker-Token: true, no token is issued.
    resp = await client.put("/v1/repositories/alice/app/", json=[], headers=alice.basic)
    assert resp.status == 200
    assert "X-Docker-Token" not in resp.headers


async def test_library_is_for_admins(
    client: Client, admin: DockerV1, alice: DockerV1, anonymous: DockerV1
) -> None:
    images = chain("busybox")
    await admin.push("busybox", "latest", images)
    assert len(await anonymous.pull("busybox", "latest")) == 3
    status, _, _ = await alice.index("PUT", "/v1/repositories/busybox/", [])
    assert status == 403
    status, _, headers = await anonymous.index("PUT", "/v1/repositories/busybox/", [])
    assert status == 401
    assert "Basic" in headers["WWW-Authenticate"]
    # Basic on a registry call to library: refused for alice too.
    resp = await client.put(
        "/v1/repositories/busybox/tags/evil", json=images[0].image_id, headers=alice.basic
    )
    assert resp.status == 403


async def test_no_writes_into_another_users_namespace(
    client: Client, db: asyncpg.Connection, settings: Settings, alice: DockerV1, bob: DockerV1
) -> None:
    await alice.push("alice/app", "latest", chain("owned"))
    before = await snapshot(db, settings)
    status, _, _ = await bob.index("PUT", "/v1/repositories/alice/app/", [])
    assert status == 403
    status, _, _ = await bob.index("PUT", "/v1/repositories/alice/app/images", [])
    assert status == 403
    status, _, _ = await bob.index("DELETE", "/v1/repositories/alice/app/")
    assert status == 403
    resp = await client.delete("/v1/repositories/alice/app/tags/latest", headers=bob.basic)
    assert resp.status == 403
    # A namespace that is nobody's: refused as well.
    status, _, _ = await bob.index("PUT", "/v1/repositories/nobody_ns/app/", [])
    assert status == 403
    assert await snapshot(db, settings) == before


async def test_token_scope_is_enforced(
    client: Client, db: asyncpg.Connection, settings: Settings, alice: DockerV1, bob: DockerV1
) -> None:
    images = chain("scoped")
    await alice.push("alice/app", "latest", images)
    await bob.push("bob_b/tool", "latest", chain("bobs"))
    _, _, headers = await alice.index("GET", "/v1/repositories/alice/app/images")
    read_token = "Token " + headers["X-Docker-Token"]
    _, _, headers = await bob.index("PUT", "/v1/repositories/bob_b/tool/", [])
    bob_write = "Token " + headers["X-Docker-Token"]
    before = await snapshot(db, settings)

    # A read token cannot write.
    resp = await client.put(
        "/v1/repositories/alice/app/tags/hacked",
        json=images[0].image_id,
        headers={"Authorization": read_token},
    )
    assert resp.status == 403
    # A token for bob_b/tool cannot touch alice/app...
    for method in ("GET", "PUT", "DELETE"):
        resp = await client.request(
            method,
            "/v1/repositories/alice/app/tags/latest",
            json=images[0].image_id if method == "PUT" else None,
            headers={"Authorization": bob_write},
        )
        assert resp.status == 403, method
    # ...nor write alice's images (not declared in bob's repository).
    resp = await client.put(
        f"/v1/images/{images[0].image_id}/json",
        data=images[0].json,
        headers={"Authorization": bob_write},
    )
    assert resp.status in (400, 409)
    assert await snapshot(db, settings) == before
    # No credentials at all on a registry write: 401 with a Token challenge.
    resp = await client.put("/v1/repositories/alice/app/tags/x", json=images[0].image_id)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Token"


async def test_image_writes_need_a_declared_image(
    client: Client, db: asyncpg.Connection, settings: Settings, alice: DockerV1
) -> None:
    images = chain("undeclared")
    _, _, headers = await alice.index("PUT", "/v1/repositories/alice/app/", [])  # declares none
    registry = V1Client(client, "Token " + headers["X-Docker-Token"])
    before = await snapshot(db, settings)
    status, body, _ = await registry.call(
        "PUT", f"/v1/images/{images[0].image_id}/json", data=images[0].json
    )
    assert status == 400
    assert json.loads(body) == {"error": "This image does not belong to the repository"}
    assert await snapshot(db, settings) == before


async def test_forged_expired_and_tampered_tokens(client: Client, alice: DockerV1) -> None:
    await alice.push("alice/app", "latest", chain("tokens"))
    _, _, headers = await alice.index("GET", "/v1/repositories/alice/app/images")
    good = headers["X-Docker-Token"]
    tampered = good.replace("access=read", "access=write")
    other_repo = good.replace('repository="alice/app"', 'repository="alice/other"')
    expired = good.replace("expires=", "expires=1").split(",")
    forged = 'signature=AAAA,repository="alice/app",access=read,expires=9999999999,user="alice"'
    for token in (tampered, other_repo, ",".join(expired), forged, "garbage", ""):
        resp = await client.get(
            "/v1/repositories/alice/app/tags/latest", headers={"Authorization": "Token " + token}
        )
        assert resp.status == 401, token
        assert resp.headers["WWW-Authenticate"] == "Token"
    # docker-registry's index put "Token " inside the value; such headers still parse.
    resp = await client.get(
        "/v1/repositories/alice/app/tags/latest", headers={"Authorization": "Token Token " + good}
    )
    assert resp.status == 200
    resp = await client.get(
        "/v1/repositories/alice/app/tags/latest", headers={"Authorization": "token " + good}
    )
    assert resp.status == 200


async def test_private_repositories_are_invisible_to_others(
    client: Client, alice: DockerV1, bob: DockerV1, admin: DockerV1, anonymous: DockerV1
) -> None:
    images = chain("secret")
    await alice.push("alice/secret", "latest", images)
    resp = await client.put(
        "/v1/repositories/alice/secret/properties", json={"access": "private"}, headers=alice.basic
    )
    assert resp.status == 200
    status, _, _ = await anonymous.index("GET", "/v1/repositories/alice/secret/images")
    assert status == 401
    status, _, _ = await bob.index("GET", "/v1/repositories/alice/secret/images")
    assert status == 403
    # bob's tokens for his own repository do not read alice's private layers.
    await bob.push("bob_b/tool", "latest", chain("bob-tool"))
    _, _, headers = await bob.index("GET", "/v1/repositories/bob_b/tool/images")
    resp = await client.get(
        f"/v1/images/{images[2].image_id}/layer",
        headers={"Authorization": "Token " + headers["X-Docker-Token"]},
    )
    assert resp.status == 403
    assert (await client.get(f"/v1/images/{images[2].image_id}/layer")).status == 401
    # Nor does search show it; the owner and admins still see and pull it.
    resp = await client.get("/v1/search?q=secret", headers=bob.basic)
    assert (await resp.json())["results"] == []
    for who in (alice, admin):
        resp = await client.get("/v1/search?q=secret", headers=who.basic)
        assert [r["name"] for r in (await resp.json())["results"]] == ["alice/secret"]
        assert len(await who.pull("alice/secret", "latest")) == 3
    resp = await client.get("/v1/repositories/alice/secret/properties", headers=alice.basic)
    assert await resp.json() == {"access": "private"}


async def test_repository_delete(client: Client, alice: DockerV1, anonymous: DockerV1) -> None:
    images = chain("deleted")
    await alice.push("alice/app", "latest", images)
    status, _, headers = await alice.index("DELETE", "/v1/repositories/alice/app/")
    assert status == 200
    assert "access=delete" in headers["X-Docker-Token"]
    status, _, _ = await anonymous.index("GET", "/v1/repositories/alice/app/images")
    assert status == 404
    assert (await client.get("/v1/repositories/alice/app/tags")).status == 404
    status, _, _ = await alice.index("DELETE", "/v1/repositories/alice/app/")
    assert status == 404
    # The images stay (garbage collection is separate); alice can push the name again.
    await alice.push("alice/app", "latest", images)


async def test_delete_token_deletes_but_cannot_write(client: Client, alice: DockerV1) -> None:
    images = chain("deltoken")
    await alice.push("alice/app", "latest", images)
    status, _, headers = await alice.index("DELETE", "/v1/repositories/alice/app/")
    assert status == 200
    delete_token = {"Authorization": "Token " + headers["X-Docker-Token"]}
    await alice.push("alice/app", "latest", images)
    resp = await client.put(
        "/v1/repositories/alice/app/tags/x", json=images[0].image_id, headers=delete_token
    )
    assert resp.status == 403
    resp = await client.delete("/v1/repositories/alice/app/tags/latest", headers=delete_token)
    assert resp.status == 200


async def test_repository_auth_endpoint(client: Client, alice: DockerV1) -> None:
    await alice.push("alice/app", "latest", chain("authcheck"))
    await alice.push("alice/other", "latest", chain("authcheck2"))
    _, _, headers = await alice.index("GET", "/v1/repositories/alice/app/images")
    token = {"Authorization": "Token " + headers["X-Docker-Token"]}
    assert (await client.put("/v1/repositories/alice/app/auth", headers=token)).status == 200
    assert (await client.put("/v1/repositories/alice/other/auth", headers=token)).status == 403
    assert (await client.put("/v1/repositories/alice/app/auth")).status == 401
    assert (await client.put("/v1/repositories/alice/none/auth", headers=token)).status == 404


async def test_declared_lists_merge_and_never_shrink(client: Client, alice: DockerV1) -> None:
    ids = [i.image_id for i in chain("merge")]
    await alice.index("PUT", "/v1/repositories/alice/app/", [{"id": ids[0]}, {"id": ids[1]}])
    status, _, _ = await alice.index(
        "PUT", "/v1/repositories/alice/app/images", [{"id": ids[2], "checksum": "tarsum+sha256:x"}]
    )
    assert status == 204
    await alice.index("PUT", "/v1/repositories/alice/app/", [{"id": ids[0]}])
    _, body, _ = await alice.index("GET", "/v1/repositories/alice/app/images")
    listed = json.loads(body)
    assert sorted(entry["id"] for entry in listed) == sorted(ids)
    assert {"id": ids[2], "checksum": "tarsum+sha256:x"} in listed


async def test_bad_index_bodies_and_names(
    client: Client, db: asyncpg.Connection, settings: Settings, alice: DockerV1
) -> None:
    before = await snapshot(db, settings)
    for path, body in [
        ("/v1/repositories/alice/app/", b"not json"),
        ("/v1/repositories/alice/app/", b'{"id": "x"}'),
        ("/v1/repositories/alice/app/", b'[{"id": "not-an-id"}]'),
        ("/v1/repositories/alice/app/", b"[42]"),
        ("/v1/repositories/alice/Bad%20Name/", b"[]"),
        ("/v1/repositories/alice/images/", b"[]"),
    ]:
        resp = await client.put(path, data=body, headers={**alice.basic, "X-Docker-Token": "true"})
        assert resp.status == 400, (path, body)
        assert "error" in await resp.json()
    assert await snapshot(db, settings) == before
    resp = await client.put("/v1/repositories/alice/ghost/images", json=[], headers=alice.basic)
    assert resp.status == 404


async def test_credentials_must_be_valid_even_for_public_reads(
    client: Client, alice: DockerV1
) -> None:
    await alice.push("alice/app", "latest", chain("public"))
    wrong = DockerV1(client, "alice", "wrong-password")
    status, _, _ = await wrong.index("GET", "/v1/repositories/alice/app/images")
    assert status == 401


async def test_basic_credentials_work_on_registry_calls(client: Client, alice: DockerV1) -> None:
    """curl-style clients send Basic on every call (v1 spec §4.4)."""
    images = chain("basic")
    await alice.push("alice/app", "latest", images)
    await client.put(
        "/v1/repositories/alice/app/properties", json={"access": "private"}, headers=alice.basic
    )
    for _ in range(3):  # verified once, then served from the verification cache
        resp = await client.get(f"/v1/images/{images[1].image_id}/layer", headers=alice.basic)
        assert resp.status == 200
        assert await resp.read() == images[1].layer
    resp = await client.get("/v1/repositories/alice/app/tags", headers=alice.basic)
    assert await resp.json() == {"latest": images[2].image_id}


async def test_curl_style_push_with_basic_everywhere(client: Client, alice: DockerV1) -> None:
    """The README's curl walk-through with tokens on: declare, then Basic on every call."""
    (image,) = chain("curl")[:1]
    resp = await client.put(
        "/v1/repositories/alice/app/", json=[{"id": image.image_id}], headers=alice.basic
    )
    assert resp.status == 200
    registry = V1Client(client, alice.basic["Authorization"])
    await registry.push("alice/app", "latest", [image])
    assert await registry.pull("alice/app", "latest") == [(image.image_id, image.json, image.layer)]
