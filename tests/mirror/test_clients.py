"""Real clients pull through the mirror: skopeo by the namespace prefix, containerd's ``ctr``
through a ``hosts.toml`` mirror (the ``?ns=`` protocol), podman through a
``registries.conf`` mirror (the prefix again); ctr and podman unpack what they pulled."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.clients.conftest import Skopeo, skopeo
from tests.clients.test_containerd import Ctr, ctr
from tests.conftest import Client
from tests.mirror.conftest import NAMESPACE, UpstreamRegistry
from tests.mirror.proxy import Proxy
from tests.process.conftest import free_port
from tests.support import oci_layout as oci

__all__ = ["ctr", "skopeo"]  # fixtures


async def pushed_image(upstream: UpstreamRegistry, name: str, tag: str) -> oci.Image:
    image = oci.make_image(
        [oci.make_layer(name + "-a", 300_000), oci.make_layer(name + "-b", 1_000_000)]
    )
    blobs = [image.config.data, *(layer.data for layer in image.layers)]
    await upstream.push_raw(name, tag, blobs, image.manifest.data, oci.OCI_MANIFEST)
    return image


def host_of(mirror: Client) -> str:
    return f"127.0.0.1:{mirror.server.port}"


async def test_skopeo_pulls_through_the_namespace_prefix(
    skopeo: Skopeo, upstream: UpstreamRegistry, proxy: Proxy, mirror: Client, tmp_path: Path
) -> None:
    image = await pushed_image(upstream, "mirroradmin/app", "v1")
    ref = f"docker://{host_of(mirror)}/{NAMESPACE}/mirroradmin/app:v1"
    for attempt in ("cold", "warm"):
        out = tmp_path / attempt
        await skopeo("copy", "--src-tls-verify=false", ref, f"dir:{out}")
        assert oci.rehash_dir(out) == {b.digest: len(b.data) for b in image.blobs}
    for blob in image.blobs:
        assert proxy.count("GET", f"/v2/mirroradmin/app/blobs/{blob.digest}") == 1


async def test_ctr_pulls_and_unpacks_through_a_hosts_toml_mirror(
    ctr: Ctr, upstream: UpstreamRegistry, proxy: Proxy, mirror: Client, tmp_path: Path
) -> None:
    image = await pushed_image(upstream, "mirroradmin/tool", "v1")
    hosts = tmp_path / "certs.d"
    (hosts / NAMESPACE).mkdir(parents=True)
    # The registry itself is unreachable from the "node": only the mirror can serve it.
    (hosts / NAMESPACE / "hosts.toml").write_text(
        f'server = "http://127.0.0.1:{free_port()}"\n\n'
        f'[host."http://{host_of(mirror)}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )
    ref = f"{NAMESPACE}/mirroradmin/tool:v1"
    await ctr("images", "pull", "--hosts-dir", str(hosts), "--snapshotter", "native", ref)
    assert {b.digest for b in image.blobs} <= await ctr.content_digests()
    assert image.manifest.digest in (await ctr("images", "ls")).stdout
    # containerd asked the mirror with ?ns=; the mirror fetched each blob once.
    for blob in image.blobs:
        assert proxy.count("GET", f"/v2/mirroradmin/tool/blobs/{blob.digest}") == 1


async def test_podman_pulls_through_a_registries_conf_mirror(
    upstream: UpstreamRegistry, proxy: Proxy, mirror: Client, tmp_path: Path
) -> None:
    """podman (root, no daemon, private storage) with the mirror as the namespace's
    ``[[registry.mirror]]``: containers/image sends the prefixed name, no ``?ns=``."""
    podman = shutil.which("podman")
    if podman is None:
        if os.environ.get("CI") == "true":
            pytest.fail("podman is not installed (.ci/run installs it)")
        pytest.skip("podman is not installed")
    image = await pushed_image(upstream, "mirroradmin/pod", "v1")
    conf = tmp_path / "registries.conf"
    # The registry itself is unreachable from the "node": only the mirror can serve it.
    conf.write_text(
        "unqualified-search-registries = []\n\n"
        "[[registry]]\n"
        f'prefix = "{NAMESPACE}"\n'
        f'location = "127.0.0.1:{free_port()}"\n\n'
        "[[registry.mirror]]\n"
        f'location = "{host_of(mirror)}/{NAMESPACE}"\n'
        "insecure = true\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "CONTAINERS_REGISTRIES_CONF": str(conf),
    }
    # podman limits the runroot path to 50 characters: a short temp directory.
    with tempfile.TemporaryDirectory(prefix="rd-podman-") as runroot:
        storage = ["--root", str(tmp_path / "podman-root"), "--runroot", runroot]

        async def run(*args: str) -> str:
            proc = await asyncio.create_subprocess_exec(
                podman,
                *storage,
                "--storage-driver",
                "vfs",
                *args,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 300)
            assert proc.returncode == 0, f"podman {args[0]} failed:\n{err.decode()}"
            return out.decode()

        ref = f"{NAMESPACE}/mirroradmin/pod:v1"
        await run("pull", ref)
        digest = await run("image", "inspect", "--format", "{{.Digest}}", ref)
        # podman unpacked every layer (vfs): the image's root holds the layers' files.
        mounted = await run("image", "mount", ref)
        files = await asyncio.to_thread(
            lambda: {p.name for p in Path(mounted.strip()).rglob("*") if p.is_file()}
        )
        await run("image", "unmount", ref)
    assert digest.strip() == image.manifest.digest
    assert {"pod-a.bin", "pod-b.bin"} <= files
    for blob in image.blobs:
        assert proxy.count("GET", f"/v2/mirroradmin/pod/blobs/{blob.digest}") == 1
