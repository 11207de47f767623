"""Attacks on the UI: hostile strings, forged forms, cookies against the APIs, framing,
password guessing, open redirects and forged sessions."""

from __future__ import annotations

import re

import asyncpg

from registryd.config import Settings
from registryd.ui.app import CONTENT_SECURITY_POLICY
from tests.conftest import Client
from tests.support.docker_v1 import basic
from tests.ui.conftest import (
    ALICE,
    BOB,
    XSS_IMG,
    XSS_SCRIPT,
    XSS_URL,
    MakeBrowser,
    Seeded,
)


async def test_hostile_strings_render_as_text(seeded: Seeded, new_browser: MakeBrowser) -> None:
    browser = new_browser()
    pages = [
        await browser.get("/ui/"),
        await browser.get("/ui/?q=" + "%3Cscript%3E"),
        await browser.get("/ui/r/alice/app"),
        await browser.get(f"/ui/r/alice/app/-/manifest/{seeded.image_digest}"),
        await browser.get(f"/ui/r/alice/app/-/manifest/{seeded.referrer_digest}"),
    ]
    for page in pages:
        assert page.status == 200
        for raw in (XSS_SCRIPT, XSS_IMG, "<img", "<script>alert"):
            assert raw not in page.text
        # No user string ever becomes a link target or an event handler.
        assert not re.search(r"""(href|src|action)\s*=\s*["']?\s*javascript:""", page.text, re.I)
        assert "onerror=" not in page.text.replace("onerror=alert(1)&gt;", "")
    image = pages[3].text
    assert "HOSTILE=&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in image  # env
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in image  # label
    assert f"<code>{XSS_URL}</code>" in image  # a URL label is text, not a link
    referrers = image.split("<h2>Referrers</h2>", 1)[1]
    assert f'<span class="value">{XSS_URL}</span>' in referrers  # annotation as text
    assert "demo app &#34;&gt;&lt;img" in pages[0].text  # description


async def test_hostile_search_terms_and_names_render_as_text(new_browser: MakeBrowser) -> None:
    browser = new_browser()
    page = await browser.get("/ui/", params={"q": XSS_IMG})
    assert XSS_IMG not in page.text
    assert "&#34;&gt;&lt;img src=x" in page.text
    login = await browser.get("/ui/login", params={"next": '/ui/"><script>x</script>'})
    assert "<script>x</script>" not in login.text
    missing = await browser.get("/ui/r/%3Cscript%3Ealert(1)%3C/script%3E")
    assert missing.status == 404
    assert "<script>alert(1)" not in missing.text


async def test_forms_without_a_valid_csrf_token_are_refused(
    seeded: Seeded, new_browser: MakeBrowser, db: asyncpg.Connection, client: Client
) -> None:
    alice = new_browser()
    await alice.login(*ALICE)
    bob = new_browser()
    await bob.login(*BOB)
    bobs_token = (await bob.get("/ui/")).csrf()
    forged = [
        {},  # no token at all
        {"csrf_token": ""},
        {"csrf_token": "0" * 64},
        {"csrf_token": bobs_token},  # valid, but for another browser
    ]
    for extra in forged:
        for path, fields in (
            ("/ui/r/alice/app/-/delete-tag", {"tag": "v1.0", "origin": "v2"}),
            ("/ui/r/alice/app/-/delete-manifest", {"digest": seeded.image_digest}),
            ("/ui/r/alice/app/-/visibility", {"access": "private"}),
            ("/ui/logout", {}),
        ):
            page = await alice.post(path, {**fields, **extra}, csrf_from=None)
            assert page.status == 403, (path, extra)
            assert "did not come from this site" in page.text
    async with client.get("/v2/alice/app/tags/list") as resp:
        assert "v1.0" in (await resp.json())["tags"]
    assert await db.fetchval("SELECT is_public FROM repositories WHERE name = 'app'") is True
    assert "Sign out" in (await alice.get("/ui/")).text  # still signed in
    # The login form too: a site cannot sign a victim into the attacker's account.
    fresh = new_browser()
    page = await fresh.post("/ui/login", {"username": "bob_b", "password": BOB[1]}, csrf_from=None)
    assert page.status == 403
    assert fresh.cookie("registryd_session") is None


async def test_the_session_cookie_never_authenticates_the_apis(
    seeded: Seeded, new_browser: MakeBrowser, client: Client
) -> None:
    alice = new_browser()
    await alice.login(*ALICE)
    cookie = alice.cookie("registryd_session")
    assert cookie is not None
    # Sent explicitly, whatever path the browser would scope it to.
    headers = {"Cookie": f"registryd_session={cookie}; registryd_csrf=x"}
    for path in (
        "/v2/alice/secret/tags/list",
        f"/v2/alice/secret/manifests/{seeded.secret_digest}",
        "/v1/repositories/alice/secret/tags",
        "/v1/repositories/alice/secret/images",
    ):
        async with client.get(path, headers=headers) as resp:
            assert resp.status == 401, path  # anonymous: private needs credentials
    async with client.get("/v2/_catalog", headers=headers) as resp:
        assert b"alice/secret" not in await resp.read()
    async with client.get("/v1/users/", headers=headers) as resp:
        assert resp.status == 401
    async with client.delete("/v2/alice/app/manifests/v1.0", headers=headers) as resp:
        assert resp.status == 401
    async with client.get("/v2/alice/app/tags/list") as resp:
        assert "v1.0" in (await resp.json())["tags"]
    # The same user with Basic credentials is of course let in.
    async with client.get(
        "/v2/alice/secret/tags/list", headers={"Authorization": basic(*ALICE)}
    ) as resp:
        assert resp.status == 200


async def test_cookies_are_scoped_http_only_and_strict(
    seeded: Seeded, new_browser: MakeBrowser
) -> None:
    browser = new_browser()
    form = await browser.get("/ui/login")
    csrf_cookie = form.headers.getall("Set-Cookie")
    assert any(c.startswith("registryd_csrf=") for c in csrf_cookie)
    async with browser.session.post(
        "/ui/login",
        data={"username": ALICE[0], "password": "x", "csrf_token": form.csrf()},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 401
    async with browser.session.post(
        "/ui/login",
        data={"username": ALICE[0], "password": ALICE[1], "csrf_token": form.csrf()},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303
        assert resp.headers["Location"] == "/ui/"
        cookies = {c.split("=", 1)[0]: c for c in resp.headers.getall("Set-Cookie")}
    session = cookies["registryd_session"]
    for attribute in ("Path=/ui", "HttpOnly", "SameSite=Strict", "Max-Age="):
        assert attribute in session
    assert "Secure" not in session  # plain HTTP here; request.secure adds it under TLS
    assert "Path=/ui" in cookies["registryd_csrf"]
    assert "HttpOnly" in cookies["registryd_csrf"]
    # Signing in rotates the CSRF value: a token seen before login is worthless after it.
    assert form.csrf() != (await browser.get("/ui/")).csrf()


async def test_security_headers_on_every_ui_response(
    seeded: Seeded, new_browser: MakeBrowser
) -> None:
    browser = new_browser()
    for path in ("/ui/", "/ui/r/alice/app", "/ui/login", "/ui/r/nothing/here", "/ui/static/ui.js"):
        page = await browser.get(path)
        assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["X-Content-Type-Options"] == "nosniff"
    csp = CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    page = await browser.get("/ui/r/alice/app")
    assert page.headers["Cache-Control"] == "no-store"
    assert "<script>" not in page.text  # no inline script: only <script src=...>
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)
    assert " style=" not in page.text
    assert "<style" not in page.text


async def test_failed_logins_are_throttled_like_the_api(
    seeded: Seeded, new_browser: MakeBrowser, settings: Settings, client: Client
) -> None:
    """The form shares the APIs' throttle: per account, then per address."""
    browser = new_browser()
    for _ in range(settings.login_failures_per_account):
        page = await browser.post("/ui/login", {"username": "alice", "password": "wrong"})
        assert page.status == 401
        assert "Wrong username or password" in page.text
    # Guessing goes on: refused before any hashing. (A password this process verified
    # recently still works, so an attacked account's own clients are not locked out.)
    page = await browser.post("/ui/login", {"username": "alice", "password": "wrong-again"})
    assert page.status == 429
    assert int(page.headers["Retry-After"]) > 0
    assert browser.cookie("registryd_session") is None
    # Other accounts from the same address, until the address is throttled too.
    spare = settings.login_failures_per_address - settings.login_failures_per_account
    for i in range(spare):
        page = await browser.post("/ui/login", {"username": f"guess{i}", "password": "x"})
        assert page.status == 401
    unknown = new_browser()
    page = await unknown.post("/ui/login", {"username": "nobody", "password": "x"})
    assert page.status == 429  # the same address
    # The API's Basic login from that address is refused by the same throttle.
    resp = await client.get("/v1/users", headers={"Authorization": basic("bob_b", "x")})
    assert resp.status == 429


async def test_login_redirects_only_inside_the_ui(seeded: Seeded, new_browser: MakeBrowser) -> None:
    for target, expected in (
        ("/ui/r/alice/app", "/ui/r/alice/app"),
        ("//evil.example/ui/", "/ui/"),
        ("https://evil.example/", "/ui/"),
        ("/ui//evil.example", "/ui/"),
        ("/ui/\\evil", "/ui/"),
    ):
        browser = new_browser()
        form = await browser.get("/ui/login")
        async with browser.session.post(
            "/ui/login",
            data={
                "username": ALICE[0],
                "password": ALICE[1],
                "next": target,
                "csrf_token": form.csrf(),
            },
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == expected, target


async def test_forged_or_stale_sessions_are_anonymous(
    seeded: Seeded, new_browser: MakeBrowser, db: asyncpg.Connection
) -> None:
    alice = new_browser()
    await alice.login(*ALICE)
    cookie = alice.cookie("registryd_session")
    assert cookie is not None
    username, expires, mac = cookie.split(".")
    for forged in (
        f"admin.{expires}.{mac}",  # another user, alice's MAC
        f"{username}.{int(expires) + 1000}.{mac}",  # extended
        f"{username}.{expires}.{'0' * 64}",
        f"{username}.1.{mac}",  # expired
        "garbage",
        "",
    ):
        intruder = new_browser()
        intruder.session.cookie_jar.update_cookies({"registryd_session": forged})
        page = await intruder.get("/ui/r/alice/secret")
        assert page.status == 404, forged
        assert "Sign out" not in page.text
    assert (await alice.get("/ui/r/alice/secret")).status == 200
    # A disabled account's session ends at once...
    await db.execute("UPDATE users SET is_active = false WHERE username = 'alice'")
    assert (await alice.get("/ui/r/alice/secret")).status == 404
    await db.execute("UPDATE users SET is_active = true WHERE username = 'alice'")
    assert (await alice.get("/ui/r/alice/secret")).status == 200
    # ...and so does every session when the password changes.
    await db.execute(
        "UPDATE users SET password_hash = password_hash || 'x' WHERE username = 'alice'"
    )
    assert (await alice.get("/ui/r/alice/secret")).status == 404


async def test_logout_ends_the_session(seeded: Seeded, new_browser: MakeBrowser) -> None:
    alice = new_browser()
    await alice.login(*ALICE)
    page = await alice.post("/ui/logout", {}, csrf_from="/ui/")
    assert page.status == 200
    assert "You are signed out." in page.text
    assert alice.cookie("registryd_session") in (None, "")
    assert (await alice.get("/ui/r/alice/secret")).status == 404
