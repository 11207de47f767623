"""Under TLS the UI's cookies are Secure (a self-signed certificate made with openssl)."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp.pytest_plugin import AiohttpServer

from registryd.app import create_app
from registryd.config import Settings
from tests.ui.conftest import ADMIN


@pytest.fixture
def server_tls(tmp_path: Path) -> ssl.SSLContext:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_cookies_are_secure_under_tls(
    settings: Settings, aiohttp_server: AiohttpServer, server_tls: ssl.SSLContext
) -> None:
    server = await aiohttp_server(create_app(settings), ssl=server_tls)
    base = f"https://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(
        base, cookie_jar=aiohttp.CookieJar(unsafe=True), connector=aiohttp.TCPConnector(ssl=False)
    ) as session:
        async with session.get("/ui/login") as resp:
            html = await resp.text()
            assert all("Secure" in c for c in resp.headers.getall("Set-Cookie"))
        match = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert match is not None
        async with session.post(
            "/ui/login",
            data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": match.group(1)},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
            cookies = resp.headers.getall("Set-Cookie")
    session_cookie = next(c for c in cookies if c.startswith("registryd_session="))
    for attribute in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/ui"):
        assert attribute in session_cookie
