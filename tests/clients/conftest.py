"""Real clients (skopeo) against ``registryd serve`` as a real process.

Each test gets its own server, database and client state (HOME, auth file,
blob-info cache), so what a client remembers cannot leak between tests. In CI
(``CI=true``) a missing skopeo is a failure, elsewhere a skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.process.conftest import Launcher, ServerProcess, launcher

__all__ = ["launcher"]  # the fixture, shared with tests/process


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Skopeo:
    executable: str
    home: Path

    async def __call__(self, *args: str, check: bool = True) -> Result:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "REGISTRY_AUTH_FILE": str(self.home / "auth.json"),
            "TMPDIR": str(self.home),
        }
        return await run_tool([self.executable, "--insecure-policy", *args], env, check=check)


async def run_tool(argv: list[str], env: dict[str, str] | None, *, check: bool = True) -> Result:
    """Run a client to completion (at most 5 minutes); with ``check``, fail on non-zero exit."""
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    result = Result(proc.returncode, out.decode(), err.decode())
    if check:
        assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stderr}"
    return result


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return path


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    home = tmp_path / "client-home"
    home.mkdir()
    return Skopeo(_tool("skopeo"), home)


@dataclass
class Registry:
    server: ServerProcess

    @property
    def host(self) -> str:
        return self.server.url.removeprefix("http://")

    def ref(self, name: str) -> str:
        return f"docker://{self.host}/{name}"


StartRegistry = Callable[..., Registry]


@pytest.fixture
def start_registry(launcher: Launcher, tmp_path: Path, database_url: str) -> StartRegistry:
    """Start ``registryd serve`` with extra ``REGISTRYD_*`` variables (auth off by default)."""

    def start(**env: str) -> Registry:
        server = launcher.start(tmp_path / "data", database_url, env=env)
        return Registry(server)

    return start


@pytest.fixture
def registry(start_registry: StartRegistry) -> Registry:
    return start_registry()
