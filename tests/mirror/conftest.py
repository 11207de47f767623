"""The pull-through cache against real upstream registries on loopback.

Upstream: a second ``registryd serve`` in token mode (so the mirror goes through
the Bearer token flow), reached through a counting proxy; or distribution 2.8
(Debian's ``docker-registry``) with htpasswd Basic auth. The mirror is the real
app on a real socket, with its own database.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings, Upstream
from tests.conftest import Client, fresh_database
from tests.mirror.proxy import Proxy
from tests.process.conftest import Launcher, ServerProcess, free_port, launcher
from tests.support.docker_v1 import basic
from tests.support.v2client import V2Client

__all__ = ["launcher"]

ADMIN = "mirroradmin"
ADMIN_PASSWORD = "upstream-secret-pw"
NAMESPACE = "upstream.test"


@pytest.fixture
async def upstream_database_url(template_ready: str) -> AsyncIterator[str]:
    """A second fresh database, for the upstream registryd."""
    async with fresh_database(template_ready, "t_up_") as url:
        yield url


@dataclass
class UpstreamRegistry:
    """A real registryd upstream in token mode; pushes go straight to it as its admin."""

    server: ServerProcess
    launcher: Launcher
    data_dir: Path
    database_url: str
    env: dict[str, str]

    async def push(self, name: str, tag: str, layers: list[bytes]) -> bytes:
        async with aiohttp.ClientSession(base_url=self.server.url) as http:
            client = V2Client(http, {"Authorization": basic(ADMIN, ADMIN_PASSWORD)})
            return await client.push_image(name, tag, layers)

    async def push_raw(
        self, name: str, tag: str, blobs: list[bytes], manifest: bytes, media_type: str
    ) -> None:
        async with aiohttp.ClientSession(base_url=self.server.url) as http:
            client = V2Client(http, {"Authorization": basic(ADMIN, ADMIN_PASSWORD)})
            for blob in blobs:
                await client.push_blob(name, blob)
            status, body, _ = await client.push_manifest(name, tag, manifest, media_type)
            assert status == 201, body

    def stop(self) -> None:
        self.server.stop()

    def kill(self) -> None:
        self.server.stop(signal.SIGKILL)

    def restart(self) -> None:
        """Start it again on the same port, data and database."""
        url = self.server.url
        env = {**self.env, "REGISTRYD_PORT": url.rsplit(":", 1)[1]}
        self.server = self.launcher.start(self.data_dir, self.database_url, env=env, wait=False)
        self.server.url = url
        Launcher.wait_ready(self.server)


StartUpstream = Callable[..., UpstreamRegistry]


@pytest.fixture
def start_upstream(launcher: Launcher, tmp_path: Path, upstream_database_url: str) -> StartUpstream:
    def start(**extra: str) -> UpstreamRegistry:
        env = {
            "REGISTRYD_AUTH_MODE": "token",
            "REGISTRYD_ADMIN_USER": ADMIN,
            "REGISTRYD_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "REGISTRYD_LOG_FORMAT": "json",
            **extra,
        }
        data_dir = tmp_path / "upstream-data"
        server = launcher.start(data_dir, upstream_database_url, env=env)
        return UpstreamRegistry(server, launcher, data_dir, upstream_database_url, env)

    return start


@pytest.fixture
def upstream(start_upstream: StartUpstream) -> UpstreamRegistry:
    return start_upstream()


def upstreams_setting(proxy: Proxy) -> str:
    """``REGISTRYD_UPSTREAMS`` for a ``serve`` process mirroring the upstream through
    ``proxy``, with the upstream admin's credentials."""
    return (
        f'[{{namespace = "{NAMESPACE}", url = "{proxy.url}", '
        f'username = "{ADMIN}", password = "{ADMIN_PASSWORD}"}}]'
    )


@pytest.fixture
async def proxy(upstream: UpstreamRegistry) -> AsyncIterator[Proxy]:
    counting = Proxy(upstream.server.url)
    await counting.start()
    yield counting
    await counting.close()


StartMirror = Callable[..., Awaitable[Client]]


@pytest.fixture
def start_mirror(tmp_path: Path, database_url: str, aiohttp_client: AiohttpClient) -> StartMirror:
    """The mirror app on a real socket; ``upstreams`` as in the config file."""

    async def start(*upstreams: Upstream, **overrides: Any) -> Client:
        settings = Settings(
            **{
                "auth_mode": "none",
                "token_secret": "test-secret-" + "x" * 32,
                "data_dir": tmp_path / "mirror-data",
                "database_url": database_url,
                "db_pool_min_size": 1,
                "db_pool_max_size": 10,
                "upstreams": upstreams,
                **overrides,
            }
        )
        return await aiohttp_client(create_app(settings))

    return start


@pytest.fixture
async def mirror(start_mirror: StartMirror, proxy: Proxy) -> Client:
    """A mirror of the registryd upstream (through the counting proxy), with credentials."""
    return await start_mirror(
        Upstream(
            NAMESPACE,
            proxy.url,
            username=ADMIN,
            password=ADMIN_PASSWORD,
            tag_ttl_seconds=300,
            connect_timeout_seconds=2,
            read_timeout_seconds=5,
        )
    )


# distribution 2.8 ---------------------------------------------------------------


@dataclass
class Distribution:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path


def _wait_listening(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {log_path.read_text()}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # 401: it answers
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"not listening after 30 s: {log_path.read_text()}")


def htpasswd_line(user: str, password: str) -> str:
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{user}:{hashed}\n"


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[Distribution]:
    """distribution 2.8 with htpasswd Basic auth; a missing binary skips (fails in CI)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("docker-registry is not installed (.ci/run installs it)")
        pytest.skip("docker-registry is not installed")
    base = tmp_path / "distribution"
    base.mkdir()
    (base / "htpasswd").write_text(htpasswd_line(ADMIN, ADMIN_PASSWORD))
    port = free_port()
    (base / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: test\n    path: {base / 'htpasswd'}\n"
    )
    log_path = base / "log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([binary, "serve", str(base / "config.yml")], stdout=log, stderr=log)
    server = Distribution(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        _wait_listening(server.url + "/v2/", proc, log_path)
        yield server
    finally:
        proc.kill()
        proc.wait(10)
