"""What the pages show: catalog and search, repository, image, index, referrers, v1 image."""

from __future__ import annotations

import dataclasses
import re

import aiohttp
import asyncpg
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from tests.conftest import Client
from tests.support.content import sha256
from tests.support.docker_v1 import basic
from tests.support.images import tar_layer
from tests.support.v2client import V2Client
from tests.ui.conftest import (
    ADMIN,
    ALICE,
    SBOM_TYPE,
    SIGNATURE_TYPE,
    Browser,
    MakeBrowser,
    Seeded,
    image_config,
    push_image,
)


def rows(html: str, table_id: str) -> list[str]:
    body = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr[ >].*?</tr>", body, re.S)[1:]  # after the header row


async def test_catalog_lists_repositories_with_their_numbers(
    seeded: Seeded, new_browser: MakeBrowser
) -> None:
    page = await new_browser().get("/ui/")
    assert page.status == 200
    listed = rows(page.text, "repositories")
    assert [re.search(r'class="repo"[^>]*>([^<]+)<', r).group(1) for r in listed] == [  # type: ignore[union-attr]
        "alice/app",
        "alice/oldschool",
    ]
    app, old = listed
    assert '<td class="num">2</td>' in app  # v1.0 and multi
    assert "origin-v2" in app
    assert "origin-v1" not in app
    assert "origin-v1" in old
    assert "badge public" in old
    assert re.search(r'<td class="num">\d+(\.\d)? (B|KiB)</td>', app)
    assert re.search(r"<td>20\d\d-\d\d-\d\d \d\d:\d\d UTC</td>", app)


async def test_search_matches_names_and_descriptions(
    seeded: Seeded, new_browser: MakeBrowser
) -> None:
    browser = new_browser()
    by_name = await browser.get("/ui/?q=oldsch")
    assert "alice/oldschool" in by_name.text
    assert "alice/app" not in by_name.text
    by_description = await browser.get("/ui/?q=demo")
    assert "alice/app" in by_description.text
    assert "alice/oldschool" not in by_description.text
    nothing = await browser.get("/ui/?q=%25")  # a LIKE wildcard is matched literally
    assert "No repositories match" in nothing.text


async def test_catalog_paginates(db: asyncpg.Connection, new_browser: MakeBrowser) -> None:
    await db.execute(
        "INSERT INTO repositories (namespace, name) SELECT 'team', 'repo' || lpad(i::text, 3, '0')"
        " FROM generate_series(1, 60) AS i"
    )
    browser = new_browser()
    first = await browser.get("/ui/")
    assert len(rows(first.text, "repositories")) == 50
    assert "page 1 of 2" in first.text
    assert "60 in all" in first.text
    second = await browser.get("/ui/?page=2")
    assert len(rows(second.text, "repositories")) == 10
    assert "team/repo051" in second.text
    assert "team/repo050" not in second.text
    assert 'rel="prev"' in second.text
    assert 'rel="next"' not in second.text


async def test_repository_page_shows_tags_commands_and_platforms(
    seeded: Seeded, new_browser: MakeBrowser
) -> None:
    page = await new_browser().get("/ui/r/alice/app")
    assert page.status == 200
    tags = rows(page.text, "tags")
    assert [re.search(r'data-tag="([^"]+)"', t).group(1) for t in tags] == ["multi", "v1.0"]  # type: ignore[union-attr]
    multi, v1 = tags
    assert seeded.index_digest in multi
    assert "application/vnd.oci.image.index.v1+json" in multi
    assert "linux/amd64" in multi
    assert "linux/arm64/v8" in multi
    assert f"/ui/r/alice/app/-/manifest/{seeded.arm_digest}" in multi
    assert seeded.image_digest in v1
    assert "application/vnd.oci.image.manifest.v1+json" in v1
    host = page.text.split("docker pull ", 1)[1].split("/", 1)[0]
    for command in (
        f"docker pull {host}/alice/app:multi",
        f"podman pull --tls-verify=false {host}/alice/app:multi",
        f"skopeo copy --src-tls-verify=false docker://{host}/alice/app:multi oci:app",
        f"ctr images pull --plain-http {host}/alice/app:multi",
    ):
        assert command in page.text
    assert "badge public" in page.text
    assert "origin-v2" in page.text
    assert "delete-tag" not in page.text
    assert "make-private" not in page.text


async def test_repository_tags_paginate_and_filter(
    client: Client, new_browser: MakeBrowser
) -> None:
    v2 = V2Client(client, {"Authorization": basic(*ADMIN)})
    manifest = await v2.push_image("team/many", "t000", [b"one layer"])
    for i in range(1, 60):
        status, body, _ = await v2.push_manifest("team/many", f"t{i:03}", manifest)
        assert status == 201, body
    browser = new_browser()
    first = await browser.get("/ui/r/team/many")
    assert len(rows(first.text, "tags")) == 50
    assert "page 1 of 2" in first.text
    assert "60 in all" in first.text
    second = await browser.get("/ui/r/team/many?page=2")
    tags = [re.search(r'data-tag="([^"]+)"', t).group(1) for t in rows(second.text, "tags")]  # type: ignore[union-attr]
    assert tags == [f"t{i:03}" for i in range(50, 60)]
    filtered = await browser.get("/ui/r/team/many?q=t05")
    assert len(rows(filtered.text, "tags")) == 10
    bad_page = await browser.get("/ui/r/team/many?page=-3")
    assert bad_page.status == 200
    assert "page 1 of 2" in bad_page.text


async def test_image_page_shows_layers_config_and_referrers(
    seeded: Seeded, new_browser: MakeBrowser
) -> None:
    page = await new_browser().get(f"/ui/r/alice/app/-/manifest/{seeded.image_digest}")
    assert page.status == 200
    assert len(rows(page.text, "layers")) == 1
    config = page.text.split('id="config"', 1)[1]
    assert "/bin/server --port=8080" in config  # entrypoint
    assert "<code>serve</code>" in config  # cmd
    assert "PATH=/usr/bin" in config  # env
    assert "8080/tcp" in config  # exposed ports
    assert "org.opencontainers.image.source" in config  # labels
    assert "/bin/sh -c echo" in config  # history
    assert "linux/amd64" in config
    referrers = page.text.split("<h2>Referrers</h2>", 1)[1]
    assert SIGNATURE_TYPE in referrers
    assert SBOM_TYPE in referrers
    assert seeded.referrer_digest in referrers
    assert seeded.sbom_digest in referrers
    assert '<span class="tag">v1.0</span>' in page.text
    assert f"@{seeded.image_digest}" in page.text  # pull by digest


async def test_index_page_links_its_platforms(seeded: Seeded, new_browser: MakeBrowser) -> None:
    browser = new_browser()
    page = await browser.get(f"/ui/r/alice/app/-/manifest/{seeded.index_digest}")
    platforms = rows(page.text, "platforms")
    assert len(platforms) == 2
    assert "linux/arm64/v8" in platforms[1]
    assert seeded.arm_digest in platforms[1]
    child = await browser.get(f"/ui/r/alice/app/-/manifest/{seeded.arm_digest}")
    assert child.status == 200
    assert "linux/arm64" in child.text


async def test_referrer_page_links_back_to_its_subject(
    seeded: Seeded, new_browser: MakeBrowser
) -> None:
    page = await new_browser().get(f"/ui/r/alice/app/-/manifest/{seeded.referrer_digest}")
    assert page.status == 200
    assert f'href="/ui/r/alice/app/-/manifest/{seeded.image_digest}"' in page.text
    assert SIGNATURE_TYPE in page.text


async def test_v1_image_page_shows_its_ancestry(seeded: Seeded, new_browser: MakeBrowser) -> None:
    browser = new_browser()
    repo = await browser.get("/ui/r/alice/oldschool")
    assert f"/ui/r/alice/oldschool/-/v1/{seeded.v1_top}" in repo.text
    assert "application/vnd.docker.container.image.v1+json" in repo.text
    assert "docker pull" in repo.text
    assert "podman pull" not in repo.text
    page = await browser.get(f"/ui/r/alice/oldschool/-/v1/{seeded.v1_top}")
    assert page.status == 200
    ancestry = page.text.split('id="ancestry"', 1)[1].split("</ol>", 1)[0]
    assert ancestry.index(seeded.v1_top) < ancestry.index(seeded.v1_base)
    assert "2014-06-01T00:00:00Z" in page.text  # "created" from the image JSON


async def test_unknown_things_are_404_pages(seeded: Seeded, new_browser: MakeBrowser) -> None:
    browser = new_browser()
    for path in (
        "/ui/r/alice/nothing",
        "/ui/r/alice/app/-/manifest/sha256:" + "0" * 64,
        f"/ui/r/alice/app/-/v1/{seeded.v1_top}",  # a v1 image of another repository
        "/ui/r/alice/oldschool/-/v1/not-an-id",
        "/ui/no-such-page",
        "/ui/static/missing.css",
    ):
        page = await browser.get(path)
        assert page.status == 404, path
    bad_digest = await browser.get("/ui/r/alice/app/-/manifest/sha256:zz")
    assert bad_digest.status == 400


async def test_static_assets_are_served_by_registryd(
    new_browser: MakeBrowser, client: Client
) -> None:
    browser = new_browser()
    page = await browser.get("/ui/")
    for asset in re.findall(r'(?:href|src)="(/ui/static/[^"]+)"', page.text):
        served = await browser.get(asset)
        assert served.status == 200, asset
        assert "immutable" in served.headers["Cache-Control"]
    css = await browser.get("/ui/static/ui.css")
    assert css.headers["Content-Type"].startswith("text/css")
    assert "no-cache" in css.headers["Cache-Control"]  # no version: revalidate
    assert "http://" not in css.text
    assert "https://" not in css.text


async def test_auth_off_shows_everything(settings: Settings, aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(dataclasses.replace(settings, auth_mode="none")))
    await push_image(V2Client(client), "anyone/thing", "1", "amd64", tar_layer({"x": b"x"}))
    async with aiohttp.ClientSession(
        base_url=str(client.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as session:
        page = await Browser(session).get("/ui/r/anyone/thing")
    assert page.status == 200
    assert "delete-tag" in page.text  # with access checks off, anyone may, as in the APIs


async def test_config_of_another_repository_is_not_read(
    seeded: Seeded, client: Client, new_browser: MakeBrowser, db: asyncpg.Connection
) -> None:
    """A config blob unlinked from the repository is not shown, even if its file exists."""
    config = sha256(image_config("amd64"))
    # The API refuses to unlink a blob a manifest needs (409); data from before that
    # rule, or a repair, can still leave one unlinked: cut the link underneath.
    async with client.delete(
        f"/v2/alice/app/blobs/{config}", headers={"Authorization": basic(*ALICE)}
    ) as resp:
        assert resp.status == 409
    unlinked = await db.execute(
        "DELETE FROM v2_repository_blobs WHERE digest = $1 AND repository_id ="
        " (SELECT repository_id FROM repositories WHERE namespace = 'alice' AND name = 'app')",
        config,
    )
    assert unlinked == "DELETE 1"
    page = await new_browser().get(f"/ui/r/alice/app/-/manifest/{seeded.image_digest}")
    assert page.status == 200
    assert 'id="config"' not in page.text
    assert "is not shown" in page.text
