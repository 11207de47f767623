"""The README's shell walk-throughs, run as written against a fresh server in token mode.

A newcomer copies these blocks verbatim; if the code moves, this test fails
before they do. Only the address is changed, to the test server's port.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.process.conftest import Launcher

README = Path(__file__).resolve().parents[2] / "README.md"


def shell_block_after(heading: str) -> str:
    """The first ```sh block in the README section titled ``heading``."""
    text = README.read_text()
    section = text[text.index(f"## {heading}\n") :]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match is not None, heading
    return match.group(1)


def run_block(script: str, cwd: Path, host: str) -> str:
    """Run ``script`` with bash, stopping at the first failing command (blocks)."""
    home = cwd / "home"
    home.mkdir(exist_ok=True)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace("127.0.0.1:5000", host)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": str(home)},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"{script}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result.stdout


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is not installed (.ci/run installs it)")
        pytest.skip(f"{tool} is not installed")


async def test_curl_and_skopeo_walk_throughs(
    launcher: Launcher, tmp_path: Path, database_url: str
) -> None:
    need("curl")
    # Exactly what the install-and-run command starts: token mode, nobody signed up.
    server = launcher.start(tmp_path / "data", database_url, env={"REGISTRYD_AUTH_MODE": "token"})
    host = server.url.removeprefix("http://")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(README, work / "README.md")

    out = await asyncio.to_thread(
        run_block, shell_block_after("A push and a pull with curl"), work, host
    )
    assert '"User Created"' in out
    assert "pulled what was pushed" in out
    assert "X-Docker-Size" in out

    need("skopeo")
    await asyncio.to_thread(
        run_block, shell_block_after("A push and a pull with skopeo (v2)"), work, host
    )
    pulled = work / "pulled"
    assert (pulled / "manifest.json").is_file()
    layer_digests = re.findall(
        r'"digest":"sha256:([0-9a-f]{64})"', (work / "layout" / "index.json").read_text()
    )
    assert layer_digests
    # Every blob of the layout came back byte for byte.
    for blob in (work / "layout" / "blobs" / "sha256").iterdir():
        if blob.name != layer_digests[0]:  # the manifest itself is compared through skopeo's copy
            assert (pulled / blob.name).read_bytes() == blob.read_bytes()
