"""The web UI over HTTP: browsers (each its own cookie jar) and a registry with content.

Content is pushed through the real APIs: v2 images, a multi-arch index and a referrer
with Basic credentials, a v1 image with docker's index flow, and a private repository.
Hostile strings sit where users control them: config labels, env, history, annotations.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from tests.conftest import Client
from tests.support.content import sha256
from tests.support.docker_v1 import DockerV1, basic
from tests.support.images import make_chain, tar_layer
from tests.support.v2client import OCI_INDEX, OCI_MANIFEST, V2Client, descriptor

ADMIN = ("admin", "admin-password")
ALICE = ("alice", "alice-password")
BOB = ("bob_b", "bob-password")

XSS_SCRIPT = "<script>alert('xss')</script>"
XSS_IMG = '"><img src=x onerror=alert(1)>'
XSS_URL = "javascript:alert(document.cookie)"
SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM_TYPE = "application/spdx+json"

_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Tokens and permissions on, with a bootstrapped admin (as tests/auth)."""
    return dataclasses.replace(
        settings, auth_mode="token", admin_user=ADMIN[0], admin_password=ADMIN[1]
    )


@pytest.fixture
async def client(settings: Settings, aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_app(settings))


@dataclass
class Page:
    status: int
    text: str
    headers: Any

    def csrf(self) -> str:
        match = _CSRF_RE.search(self.text)
        assert match is not None, "the page has no form"
        return match.group(1)


class Browser:
    """One browser: its own cookies, following redirects like a browser does."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def get(self, path: str, **kwargs: Any) -> Page:
        async with self.session.get(path, **kwargs) as resp:
            return Page(resp.status, await resp.text(), resp.headers)

    async def post(
        self, path: str, fields: dict[str, str], *, csrf_from: str | None = "/ui/login"
    ) -> Page:
        """POST a form; with ``csrf_from``, the CSRF token a GET of that page carries."""
        data = dict(fields)
        if csrf_from is not None:
            data.setdefault("csrf_token", (await self.get(csrf_from)).csrf())
        async with self.session.post(path, data=data) as resp:
            return Page(resp.status, await resp.text(), resp.headers)

    async def login(self, username: str, password: str) -> Page:
        page = await self.post("/ui/login", {"username": username, "password": password})
        assert page.status == 200, page.text
        assert f'<span class="who">{username}' in page.text
        return page

    def cookie(self, name: str) -> str | None:
        for morsel in self.session.cookie_jar:
            if morsel.key == name:
                return morsel.value
        return None


@pytest.fixture
async def browsers(client: Client) -> AsyncIterator[list[Browser]]:
    """The browsers ``new_browser`` made in this test, closed at its end."""
    made: list[Browser] = []
    yield made
    for browser in made:
        await browser.session.close()


@pytest.fixture
def new_browser(client: Client, browsers: list[Browser]) -> MakeBrowser:
    def make() -> Browser:
        session = aiohttp.ClientSession(
            base_url=str(client.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True)
        )
        browser = Browser(session)
        browsers.append(browser)
        return browser

    return make


@dataclass
class Seeded:
    image_digest: str  # alice/app:v1.0
    index_digest: str  # alice/app:multi
    arm_digest: str  # one platform of the index
    referrer_digest: str  # a signature of v1.0
    sbom_digest: str
    secret_digest: str  # alice/secret:hidden-tag (private)
    v1_top: str  # alice/oldschool:latest
    v1_base: str


def image_config(arch: str, **extra: Any) -> bytes:
    config = {
        "architecture": arch,
        "os": "linux",
        "created": "2026-01-02T03:04:05Z",
        "config": {
            "Entrypoint": ["/bin/server", "--port=8080"],
            "Cmd": ["serve"],
            "Env": ["PATH=/usr/bin", f"HOSTILE={XSS_SCRIPT}"],
            "Labels": {
                "org.opencontainers.image.source": XSS_URL,
                "evil": XSS_IMG,
            },
            "ExposedPorts": {"8080/tcp": {}},
            "WorkingDir": "/srv",
        },
        "history": [
            {"created": "2026-01-02T03:04:05Z", "created_by": f"/bin/sh -c echo {XSS_SCRIPT}"},
        ],
        **extra,
    }
    return json.dumps(config).encode()


async def push_image(v2: V2Client, name: str, tag: str | None, arch: str, layer: bytes) -> str:
    config = image_config(arch)
    await v2.push_blob(name, config)
    await v2.push_blob(name, layer)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [descriptor(layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
        }
    ).encode()
    digest = sha256(body)
    status, text, _ = await v2.push_manifest(name, tag or digest, body)
    assert status == 201, text
    return digest


async def push_referrer(
    v2: V2Client, name: str, subject: str, artifact_type: str, annotations: dict[str, str]
) -> str:
    empty = b"{}"
    await v2.push_blob(name, empty)
    payload = json.dumps({"subject": subject, "type": artifact_type}).encode()
    await v2.push_blob(name, payload)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": descriptor(empty, "application/vnd.oci.empty.v1+json"),
            "layers": [descriptor(payload, artifact_type)],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
            "annotations": annotations,
        }
    ).encode()
    digest = sha256(body)
    status, text, _ = await v2.push_manifest(name, digest, body)
    assert status == 201, text
    return digest


async def seed_registry(client: Client, db: asyncpg.Connection) -> Seeded:
    alice_v1 = DockerV1(client, *ALICE)
    assert await alice_v1.login(email="alice@example.com") == 201
    assert await DockerV1(client, *BOB).login(email="bob@example.com") == 201
    v2 = V2Client(client, {"Authorization": basic(*ALICE)})

    image = await push_image(v2, "alice/app", "v1.0", "amd64", tar_layer({"a": b"a" * 3000}))
    amd = await push_image(v2, "alice/app", None, "amd64", tar_layer({"b": b"amd"}))
    arm = await push_image(v2, "alice/app", None, "arm64", tar_layer({"c": b"arm"}))
    sizes = {
        digest: len(await db.fetchval("SELECT body FROM v2_manifests WHERE digest = $1", digest))
        for digest in (amd, arm)
    }
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": amd,
                    "size": sizes[amd],
                    "platform": {"os": "linux", "architecture": "amd64"},
                },
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": arm,
                    "size": sizes[arm],
                    "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
                },
            ],
        }
    ).encode()
    status, text, _ = await v2.push_manifest("alice/app", "multi", index, OCI_INDEX)
    assert status == 201, text
    signature = await push_referrer(
        v2,
        "alice/app",
        image,
        SIGNATURE_TYPE,
        {"org.opencontainers.image.url": XSS_URL, "note": XSS_IMG},
    )
    sbom = await push_referrer(v2, "alice/app", image, SBOM_TYPE, {"kind": "sbom"})

    secret = await push_image(v2, "alice/secret", "hidden-tag", "amd64", tar_layer({"s": b"s"}))
    status, text, _ = await alice_v1.call(
        "PUT",
        "/v1/repositories/alice/secret/properties",
        data=json.dumps({"access": "private"}),
        headers={**alice_v1.basic, "Content-Type": "application/json"},
    )
    assert status == 200, text

    chain = make_chain("ui-old", [tar_layer({"base": b"base" * 100}), tar_layer({"top": b"t"})])
    await alice_v1.push("alice/oldschool", "latest", chain)
    await db.execute(
        "UPDATE repositories SET description = $1 WHERE namespace = 'alice' AND name = 'app'",
        f"demo app {XSS_IMG}",
    )
    return Seeded(
        image_digest=image,
        index_digest=sha256(index),
        arm_digest=arm,
        referrer_digest=signature,
        sbom_digest=sbom,
        secret_digest=secret,
        v1_top=chain[-1].image_id,
        v1_base=chain[0].image_id,
    )


@pytest.fixture
async def seeded(client: Client, db: asyncpg.Connection) -> Seeded:
    return await seed_registry(client, db)


MakeBrowser = Callable[[], Browser]
