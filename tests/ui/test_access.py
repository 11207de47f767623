"""The UI decides access as the APIs do: private content is invisible to anyone who may
not read it, on every page and in search; actions need the API's permission too."""

from __future__ import annotations

import dataclasses

import aiohttp
import asyncpg
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from tests.conftest import Client
from tests.ui.conftest import ADMIN, ALICE, BOB, Browser, MakeBrowser, Seeded


def secret_pages(seeded: Seeded) -> list[str]:
    return [
        "/ui/r/alice/secret",
        "/ui/r/alice/secret?q=hidden",
        f"/ui/r/alice/secret/-/manifest/{seeded.secret_digest}",
    ]


async def assert_secret_invisible(browser: Browser, seeded: Seeded) -> None:
    for path in ["/ui/", "/ui/?q=secret", "/ui/?q=alice", "/ui/?q=hidden"]:
        page = await browser.get(path)
        assert page.status == 200, path
        assert "alice/secret" not in page.text, path
        assert "hidden-tag" not in page.text, path
    for path in secret_pages(seeded):
        page = await browser.get(path)
        assert page.status == 404, path  # the same answer as for a repository that does not exist
        assert "hidden-tag" not in page.text, path
        assert seeded.secret_digest not in page.text, path
    # The private image's digest reached through a public repository: not there either.
    page = await browser.get(f"/ui/r/alice/app/-/manifest/{seeded.secret_digest}")
    assert page.status == 404


async def test_anonymous_users_never_see_private_content(
    seeded: Seeded, new_browser: MakeBrowser
) -> None:
    await assert_secret_invisible(new_browser(), seeded)


async def test_other_users_never_see_private_content(
    seeded: Seeded, new_browser: MakeBrowser
) -> None:
    bob = new_browser()
    await bob.login(*BOB)
    await assert_secret_invisible(bob, seeded)
    mine = await bob.get("/ui/mine")
    assert mine.status == 200
    assert "alice/" not in mine.text


async def test_owner_and_admin_see_private_content(
    seeded: Seeded, new_browser: MakeBrowser
) -> None:
    for credentials in (ALICE, ADMIN):
        browser = new_browser()
        await browser.login(*credentials)
        catalog = await browser.get("/ui/?q=secret")
        assert "alice/secret" in catalog.text
        assert "badge private" in catalog.text
        for path in secret_pages(seeded):
            page = await browser.get(path)
            assert page.status == 200, (credentials, path)
            assert "hidden-tag" in page.text
    alice = new_browser()
    await alice.login(*ALICE)
    mine = await alice.get("/ui/mine")
    for name in ("alice/app", "alice/secret", "alice/oldschool"):
        assert name in mine.text


async def test_anonymous_pull_off_hides_public_repositories_too(
    seeded: Seeded, settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    # A second server on the same database and storage, with anonymous pulls off.
    closed = await aiohttp_client(create_app(dataclasses.replace(settings, anonymous_pull=False)))
    async with (
        aiohttp.ClientSession(
            base_url=str(closed.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True)
        ) as anonymous_session,
        aiohttp.ClientSession(
            base_url=str(closed.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True)
        ) as bob_session,
    ):
        anonymous = Browser(anonymous_session)
        assert "alice/app" not in (await anonymous.get("/ui/")).text
        assert (await anonymous.get("/ui/r/alice/app")).status == 404
        bob = Browser(bob_session)
        await bob.login(*BOB)
        assert "alice/app" in (await bob.get("/ui/")).text


async def test_visibility_changes_need_write_access(
    seeded: Seeded, new_browser: MakeBrowser, db: asyncpg.Connection
) -> None:
    bob = new_browser()
    await bob.login(*BOB)
    refused = await bob.post(
        "/ui/r/alice/app/-/visibility", {"access": "private"}, csrf_from="/ui/"
    )
    assert refused.status == 403
    assert await db.fetchval("SELECT is_public FROM repositories WHERE name = 'app'") is True
    anonymous = new_browser()
    refused = await anonymous.post("/ui/r/alice/app/-/visibility", {"access": "private"})
    assert refused.status == 401
    # Bob cannot even learn whether a private repository exists by posting to it.
    hidden = await bob.post(
        "/ui/r/alice/secret/-/visibility", {"access": "public"}, csrf_from="/ui/"
    )
    assert hidden.status == 404
    assert await db.fetchval("SELECT is_public FROM repositories WHERE name = 'secret'") is False

    alice = new_browser()
    await alice.login(*ALICE)
    page = await alice.post("/ui/r/alice/app/-/visibility", {"access": "private"}, csrf_from="/ui/")
    assert page.status == 200
    assert "The repository is now private." in page.text
    assert await db.fetchval("SELECT is_public FROM repositories WHERE name = 'app'") is False
    assert "alice/app" not in (await anonymous.get("/ui/")).text
    bad = await alice.post("/ui/r/alice/app/-/visibility", {"access": "secret"}, csrf_from="/ui/")
    assert bad.status == 400


async def test_deleting_tags_and_manifests_needs_delete_access(
    seeded: Seeded, new_browser: MakeBrowser, client: Client
) -> None:
    bob = new_browser()
    await bob.login(*BOB)
    refused = await bob.post(
        "/ui/r/alice/app/-/delete-tag", {"tag": "v1.0", "origin": "v2"}, csrf_from="/ui/"
    )
    assert refused.status == 403
    refused = await bob.post(
        "/ui/r/alice/app/-/delete-manifest", {"digest": seeded.image_digest}, csrf_from="/ui/"
    )
    assert refused.status == 403
    async with client.get("/v2/alice/app/tags/list") as resp:
        assert "v1.0" in (await resp.json())["tags"]

    alice = new_browser()
    await alice.login(*ALICE)
    page = await alice.get("/ui/r/alice/app")
    assert "delete-tag" in page.text
    assert "make-private" in page.text
    deleted = await alice.post(
        "/ui/r/alice/app/-/delete-tag", {"tag": "v1.0", "origin": "v2"}, csrf_from="/ui/"
    )
    assert deleted.status == 200
    assert "The tag was deleted." in deleted.text
    async with client.get("/v2/alice/app/tags/list") as resp:
        assert (await resp.json())["tags"] == ["multi"]
    again = await alice.post(
        "/ui/r/alice/app/-/delete-tag", {"tag": "v1.0", "origin": "v2"}, csrf_from="/ui/"
    )
    assert again.status == 404
    gone = await alice.post(
        "/ui/r/alice/app/-/delete-manifest", {"digest": seeded.index_digest}, csrf_from="/ui/"
    )
    assert gone.status == 200
    assert "The manifest was deleted" in gone.text
    async with client.get(f"/v2/alice/app/manifests/{seeded.index_digest}") as resp:
        assert resp.status == 404
    v1 = await alice.post(
        "/ui/r/alice/oldschool/-/delete-tag", {"tag": "latest", "origin": "v1"}, csrf_from="/ui/"
    )
    assert v1.status == 200
    async with client.get("/v1/repositories/alice/oldschool/tags") as resp:
        assert await resp.json() == {}
    bad = await alice.post(
        "/ui/r/alice/app/-/delete-tag", {"tag": "../x", "origin": "v2"}, csrf_from="/ui/"
    )
    assert bad.status == 400
