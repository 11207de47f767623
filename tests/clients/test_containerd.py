"""containerd (what Kubernetes nodes pull with) against registryd, through its ``ctr`` client.

A private containerd daemon runs per test with its own root, state and socket;
images are pushed with skopeo from OCI layouts built on the fly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.clients.conftest import Registry, Result, Skopeo, StartRegistry, run_tool
from tests.support import oci_layout as oci
from tests.support.docker_v1 import DockerV1, basic

NAMESPACE = "registryd-test"


@dataclass
class Ctr:
    socket: Path

    async def __call__(self, *args: str, check: bool = True) -> Result:
        argv = ["ctr", "--address", str(self.socket), "--namespace", NAMESPACE, *args]
        return await run_tool(argv, None, check=check)

    async def pull(self, ref: str, *extra: str, check: bool = True) -> Result:
        # The native snapshotter unpacks without overlayfs, which a sandbox may lack.
        return await self(
            "images", "pull", "--plain-http", "--snapshotter", "native", *extra, ref, check=check
        )

    async def content_digests(self) -> set[str]:
        listing = (await self("content", "ls", "--quiet")).stdout
        return set(listing.split())


@pytest.fixture
async def ctr() -> AsyncIterator[Ctr]:
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("containerd is not installed (.ci/run installs it)")
        pytest.skip("containerd is not installed")
    # A short directory: the socket path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="rd-ctrd-") as tmp:
        base = Path(tmp)
        config = base / "config.toml"
        config.write_text(
            f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n'
            f'[grpc]\n  address = "{base}/sock"\n'
            '[plugins."io.containerd.grpc.v1.cri"]\n  disable = true\n'
        )
        log = (base / "log").open("wb")
        daemon = await asyncio.create_subprocess_exec(
            "containerd", "--config", str(config), stdout=log, stderr=log
        )
        try:
            client = Ctr(base / "sock")
            for _ in range(100):
                if (await client("version", check=False)).returncode == 0:
                    break
                await asyncio.sleep(0.1)
            yield client
        finally:
            with contextlib.suppress(ProcessLookupError):
                daemon.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(daemon.wait(), 20)
            except TimeoutError:
                daemon.kill()
                await daemon.wait()
            log.close()


def pushed_image(tmp_path: Path) -> tuple[Path, oci.Image]:
    image = oci.make_image([oci.make_layer("ctr-a", 200_000), oci.make_layer("ctr-b", 900_000)])
    layout = oci.Layout(tmp_path / "layout")
    layout.add_image(image, "v1")
    return layout.path, image


async def test_pull_unpack_and_push(
    ctr: Ctr, skopeo: Skopeo, registry: Registry, tmp_path: Path
) -> None:
    layout, image = pushed_image(tmp_path)
    await skopeo(
        "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", registry.ref("alice/app:v1")
    )

    await ctr.pull(f"{registry.host}/alice/app:v1")
    assert {b.digest for b in image.blobs} <= await ctr.content_digests()
    listed = (await ctr("images", "ls")).stdout
    assert image.manifest.digest in listed

    # containerd pushes it back under another name: the same bytes arrive.
    await ctr("images", "tag", f"{registry.host}/alice/app:v1", f"{registry.host}/alice/copy:v2")
    await ctr("images", "push", "--plain-http", f"{registry.host}/alice/copy:v2")
    async with aiohttp.ClientSession(base_url=registry.server.url) as http:
        resp = await http.get("/v2/alice/copy/manifests/v2", headers={"Accept": oci.OCI_MANIFEST})
        assert resp.status == 200
        assert await resp.read() == image.manifest.data


async def test_token_auth_anonymous_public_and_private_with_credentials(
    ctr: Ctr, skopeo: Skopeo, start_registry: StartRegistry, tmp_path: Path
) -> None:
    registry = start_registry(REGISTRYD_AUTH_MODE="token")
    async with aiohttp.ClientSession(base_url=registry.server.url) as http:
        assert await DockerV1(http, "alice", "secret-pw").login() == 201
    layout, image = pushed_image(tmp_path)
    await skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:secret-pw",
        f"oci:{layout}:v1",
        registry.ref("alice/app:v1"),
    )
    ref = f"{registry.host}/alice/app:v1"
    await ctr.pull(ref)  # anonymous: the Bearer token flow, as a kubelet without pull secrets

    async with aiohttp.ClientSession(base_url=registry.server.url) as http:
        resp = await http.put(
            "/v1/repositories/alice/app/properties",
            data=json.dumps({"access": "private"}),
            headers={"Authorization": basic("alice", "secret-pw")},
        )
        assert resp.status == 200
    await ctr("images", "rm", ref)
    await ctr("content", "prune", "references", check=False)
    refused = await ctr.pull(ref, check=False)
    assert refused.returncode != 0
    await ctr.pull(ref, "--user", "alice:secret-pw")  # an imagePullSecret's job
    assert image.manifest.digest in (await ctr("images", "ls")).stdout
