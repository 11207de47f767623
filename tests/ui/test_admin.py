"""Administration pages: only admins; accounts created, disabled, promoted; storage."""

from __future__ import annotations

import dataclasses

import aiohttp
import asyncpg
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings, Upstream
from registryd.gc.periodic import collect_if_free
from registryd.keys import SERVICES
from tests.conftest import Client
from tests.process.conftest import free_port
from tests.support.docker_v1 import basic
from tests.ui.conftest import ADMIN, ALICE, BOB, Browser, MakeBrowser, Seeded


async def test_admin_pages_are_for_admins_only(seeded: Seeded, new_browser: MakeBrowser) -> None:
    anonymous = new_browser()
    alice = new_browser()
    await alice.login(*ALICE)
    for path in ("/ui/admin/users", "/ui/admin/storage"):
        assert (await anonymous.get(path)).status == 401
        assert (await alice.get(path)).status == 403
    refused = await alice.post(
        "/ui/admin/users", {"username": "mallory", "password": "pw-mallory"}, csrf_from="/ui/"
    )
    assert refused.status == 403
    refused = await alice.post("/ui/admin/users/alice", {"change": "make-admin"}, csrf_from="/ui/")
    assert refused.status == 403
    assert "/ui/admin/users" not in (await alice.get("/ui/")).text  # no admin links either


async def test_admin_creates_disables_and_promotes_users(
    seeded: Seeded, new_browser: MakeBrowser, db: asyncpg.Connection
) -> None:
    admin = new_browser()
    await admin.login(*ADMIN)
    page = await admin.get("/ui/admin/users")
    assert page.status == 200
    for name in ("admin", "alice", "bob_b"):
        assert f'data-user="{name}"' in page.text

    created = await admin.post(
        "/ui/admin/users",
        {"username": "carol", "password": "carol-password", "email": "carol@example.com"},
        csrf_from="/ui/admin/users",
    )
    assert created.status == 200
    assert "The account was created." in created.text
    carol = new_browser()
    await carol.login("carol", "carol-password")
    taken = await admin.post(
        "/ui/admin/users",
        {"username": "carol", "password": "other-password"},
        csrf_from="/ui/admin/users",
    )
    assert taken.status == 409
    invalid = await admin.post(
        "/ui/admin/users",
        {"username": "<b>x</b>", "password": "long-enough"},
        csrf_from="/ui/admin/users",
    )
    assert invalid.status == 400
    assert "<b>x</b>" not in invalid.text
    short = await admin.post(
        "/ui/admin/users", {"username": "dave_d", "password": "x"}, csrf_from="/ui/admin/users"
    )
    assert short.status == 400
    assert "Password must be at least" in short.text

    bob = new_browser()
    await bob.login(*BOB)
    disabled = await admin.post(
        "/ui/admin/users/bob_b", {"change": "disable"}, csrf_from="/ui/admin/users"
    )
    assert disabled.status == 200
    assert "The account was changed." in disabled.text
    assert await db.fetchval("SELECT is_active FROM users WHERE username = 'bob_b'") is False
    assert "Sign out" not in (await bob.get("/ui/")).text  # his session ended
    again = new_browser()
    page = await again.post("/ui/login", {"username": BOB[0], "password": BOB[1]})
    assert page.status == 401
    await admin.post("/ui/admin/users/bob_b", {"change": "enable"}, csrf_from="/ui/admin/users")
    await admin.post("/ui/admin/users/bob_b", {"change": "make-admin"}, csrf_from="/ui/admin/users")
    await bob.login(*BOB)
    assert (await bob.get("/ui/r/alice/secret")).status == 200  # admins read everything
    assert (await bob.get("/ui/admin/storage")).status == 200

    myself = await admin.post(
        "/ui/admin/users/admin", {"change": "disable"}, csrf_from="/ui/admin/users"
    )
    assert myself.status == 400
    unknown = await admin.post(
        "/ui/admin/users/nobody", {"change": "disable"}, csrf_from="/ui/admin/users"
    )
    assert unknown.status == 404
    bogus = await admin.post(
        "/ui/admin/users/alice", {"change": "delete-everything"}, csrf_from="/ui/admin/users"
    )
    assert bogus.status == 400


async def test_storage_lists_every_repository_by_size(
    seeded: Seeded, new_browser: MakeBrowser
) -> None:
    admin = new_browser()
    await admin.login(*ADMIN)
    page = await admin.get("/ui/admin/storage")
    assert page.status == 200
    table = page.text.split('id="storage"', 1)[1]
    order = [table.index(name) for name in ("alice/app", "alice/secret")]
    assert order == sorted(order)  # app is the largest
    assert "alice/oldschool" in table
    assert "badge private" in table


async def test_admin_sees_each_mirror_upstream_and_its_last_failure(
    settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    closed = free_port()  # nothing listens there: every fetch fails at once
    upstream = Upstream(namespace="mirror.example", url=f"http://127.0.0.1:{closed}")
    client = await aiohttp_client(create_app(dataclasses.replace(settings, upstreams=(upstream,))))
    resp = await client.get(
        "/v2/mirror.example/library/alpine/manifests/3.20", headers={"Authorization": basic(*ADMIN)}
    )
    assert resp.status == 503
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url=str(client.make_url("/")), cookie_jar=jar) as http:
        admin = Browser(http)
        assert (await admin.get("/ui/admin/mirrors")).status == 401
        await admin.login(*ADMIN)
        page = await admin.get("/ui/admin/mirrors")
    assert page.status == 200
    assert 'data-upstream="mirror.example"' in page.text
    assert f"http://127.0.0.1:{closed}" in page.text
    assert "anonymous" in page.text
    assert "Last failure" in page.text
    assert "mirror.example" in page.text.split('class="error"', 1)[1]  # the failure, named


async def test_admin_sees_the_last_garbage_collection_runs(
    seeded: Seeded, client: Client, new_browser: MakeBrowser
) -> None:
    admin = new_browser()
    await admin.login(*ADMIN)
    assert "No collection has run yet" in (await admin.get("/ui/admin/gc")).text
    svc = client.app[SERVICES]
    assert await collect_if_free(svc) is not None
    report = await collect_if_free(dataclasses.replace(svc))
    assert report is not None
    page = await admin.get("/ui/admin/gc")
    assert page.status == 200
    assert page.text.count("<tr><td>") == 2  # two runs, newest first
    assert "server" in page.text
    assert "finished" in page.text
    alice = new_browser()
    await alice.login(*ALICE)
    assert (await alice.get("/ui/admin/gc")).status == 403
