"""Mirrored namespaces are read-only and under the same access control as local repositories."""

from __future__ import annotations

import json

import asyncpg

from registryd.config import Upstream
from tests.conftest import Client
from tests.mirror.conftest import ADMIN, ADMIN_PASSWORD, NAMESPACE, StartMirror, UpstreamRegistry
from tests.mirror.proxy import Proxy
from tests.mirror.test_pull_through import ACCEPT, pull
from tests.support.content import sha256
from tests.support.docker_v1 import basic
from tests.support.polling import eventually
from tests.support.v2client import V2Client, image_manifest


async def test_pushes_into_a_mirrored_namespace_are_refused(mirror: Client, proxy: Proxy) -> None:
    layer = b"would-be layer"
    for method, path in (
        ("POST", f"/v2/{NAMESPACE}/mirroradmin/app/blobs/uploads/"),
        ("POST", f"/v2/{NAMESPACE}/mirroradmin/app/blobs/uploads/?digest={sha256(layer)}"),
        ("POST", f"/v2/mirroradmin/app/blobs/uploads/?ns={NAMESPACE}"),
        ("PATCH", f"/v2/{NAMESPACE}/mirroradmin/app/blobs/uploads/{'a' * 32}"),
        ("PUT", f"/v2/{NAMESPACE}/mirroradmin/app/blobs/uploads/{'a' * 32}"),
        ("PUT", f"/v2/{NAMESPACE}/mirroradmin/app/manifests/v1"),
        ("PUT", f"/v2/mirroradmin/app/manifests/v1?ns={NAMESPACE}"),
    ):
        resp = await mirror.request(method, path, data=layer)
        assert resp.status == 403, (method, path)
        error = (await resp.json())["errors"][0]
        assert error["code"] == "DENIED"
        assert "read-only mirror" in error["detail"]
    assert sum(proxy.requests.values()) == 0  # nothing reached the upstream


async def test_pushes_elsewhere_still_work(mirror: Client) -> None:
    client = V2Client(mirror)
    manifest = await client.push_image("alice/app", "v1", [b"local layer"])
    resp = await mirror.get("/v2/alice/app/manifests/v1", headers=ACCEPT)
    assert await resp.read() == manifest
    # A name that merely starts like the namespace is local too.
    await client.push_image("upstream/app", "v1", [b"another"])


async def test_same_access_control_as_local_repositories(
    upstream: UpstreamRegistry, proxy: Proxy, start_mirror: StartMirror, db: asyncpg.Connection
) -> None:
    await upstream.push("mirroradmin/app", "v1", [b"layer"])
    mirror = await start_mirror(
        Upstream(NAMESPACE, proxy.url, ADMIN, ADMIN_PASSWORD),
        auth_mode="token",
        anonymous_pull=False,
        admin_user="localadmin",
        admin_password="local-admin-pw",
    )
    name = f"{NAMESPACE}/mirroradmin/app"
    # Anonymous pulls are off: a challenge naming the cached repository's scope.
    resp = await mirror.get(f"/v2/{name}/manifests/v1", headers=ACCEPT)
    assert resp.status == 401
    assert f'scope="repository:{name}:pull"' in resp.headers["WWW-Authenticate"]
    assert sum(proxy.requests.values()) == 0

    signup = await mirror.post(
        "/v1/users",
        data=json.dumps({"username": "bobby", "password": "bobby-pw", "email": "b@example.com"}),
        headers={"Content-Type": "application/json"},
    )
    assert signup.status == 201
    bob = {"Authorization": basic("bobby", "bobby-pw")}
    resp = await mirror.get(f"/v2/{name}/manifests/v1", headers={**ACCEPT, **bob})
    assert resp.status == 200

    # The Docker token flow: a token for the cached repository's pull scope, via ?ns= too.
    token_resp = await mirror.get(
        "/v2/token", params={"scope": f"repository:{name}:pull"}, headers=bob
    )
    token = (await token_resp.json())["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    resp = await mirror.get(f"/v2/mirroradmin/app/manifests/v1?ns={NAMESPACE}", headers=bearer)
    assert resp.status == 200

    # Made private (v1 names cannot spell a mirrored namespace; the flag is the same):
    # bob may no longer read it, an admin still may.
    # Written behind the server's back: its access cache learns of it by NOTIFY.
    await db.execute("UPDATE repositories SET is_public = false WHERE namespace = $1", NAMESPACE)

    async def refused() -> bool:
        resp = await mirror.get(f"/v2/{name}/manifests/v1", headers={**ACCEPT, **bob})
        assert resp.status in (200, 403)
        return resp.status == 403

    await eventually(refused, "bob is refused the private repository", within_seconds=2)
    admin = {"Authorization": basic("localadmin", "local-admin-pw")}
    resp = await mirror.get(f"/v2/{name}/manifests/v1", headers={**ACCEPT, **admin})
    assert resp.status == 200
    # Token-mode pushes into the namespace are refused even for admins.
    resp = await mirror.put(
        f"/v2/{name}/manifests/v2",
        data=image_manifest(b"{}", []),
        headers={**admin, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert resp.status == 403


async def test_tags_list_and_catalog_show_cached_content(
    upstream: UpstreamRegistry, mirror: Client
) -> None:
    await upstream.push("mirroradmin/app", "v1", [b"a"])
    await upstream.push("mirroradmin/app", "v2", [b"b"])
    await pull(mirror, f"{NAMESPACE}/mirroradmin/app", "v2")
    tags = await (await mirror.get(f"/v2/{NAMESPACE}/mirroradmin/app/tags/list")).json()
    assert tags["tags"] == ["v2"]  # what was pulled through, not the upstream's list
    catalog = await (await mirror.get("/v2/_catalog")).json()
    assert f"{NAMESPACE}/mirroradmin/app" in catalog["repositories"]


async def test_ns_for_a_local_repository_cannot_reach_around_access_control(
    mirror: Client,
) -> None:
    resp = await mirror.get(f"/v2/../manifests/v1?ns={NAMESPACE}")
    assert resp.status in (400, 404)
    resp = await mirror.get(f"/v2/UPPER/app/manifests/v1?ns={NAMESPACE}")
    assert resp.status == 400
    assert (await resp.json())["errors"][0]["code"] == "NAME_INVALID"
