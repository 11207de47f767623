"""skopeo (containers/image, what podman and buildah push and pull with) against registryd.

Images are built on the fly as OCI layouts; every pulled blob is re-hashed.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import shutil
import ssl
import tempfile
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.clients.conftest import Registry, Skopeo, StartRegistry
from tests.support import oci_layout as oci
from tests.support.docker_v1 import DockerV1
from tests.support.images import make_image as make_v1_image
from tests.support.v1client import V1Client

DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"


def two_layer_image(tmp_path: Path, tag: str = "v1") -> tuple[Path, oci.Image]:
    image = oci.make_image([oci.make_layer("a", 300_000), oci.make_layer("b", 1_200_000)])
    layout = oci.Layout(tmp_path / "layout")
    layout.add_image(image, tag)
    return layout.path, image


async def test_push_inspect_list_tags_pull_and_rehash(
    skopeo: Skopeo, registry: Registry, tmp_path: Path
) -> None:
    layout, image = two_layer_image(tmp_path)
    dest = registry.ref("alice/app:v1")
    await skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", dest)

    raw = await skopeo("inspect", "--tls-verify=false", "--raw", dest)
    assert raw.stdout.encode() == image.manifest.data  # stored and served byte-exact
    inspected = json.loads((await skopeo("inspect", "--tls-verify=false", dest)).stdout)
    assert inspected["Digest"] == image.manifest.digest
    assert inspected["Architecture"] == "amd64"
    assert inspected["Layers"] == [layer.digest for layer in image.layers]

    tags = json.loads(
        (await skopeo("list-tags", "--tls-verify=false", registry.ref("alice/app"))).stdout
    )
    assert tags["Tags"] == ["v1"]

    for ref in (dest, registry.ref(f"alice/app@{image.manifest.digest}")):
        out = tmp_path / ("pulled-" + hashlib.sha256(ref.encode()).hexdigest()[:8])
        await skopeo("copy", "--src-tls-verify=false", ref, f"dir:{out}")
        assert oci.rehash_dir(out) == {b.digest: len(b.data) for b in image.blobs}
        assert (out / "manifest.json").read_bytes() == image.manifest.data


async def test_multi_arch_index_with_all(
    skopeo: Skopeo, registry: Registry, tmp_path: Path
) -> None:
    images = [
        oci.make_image([oci.make_layer(arch, 200_000)], arch=arch) for arch in ("amd64", "arm64")
    ]
    layout = oci.Layout(tmp_path / "layout")
    index = layout.add_index(images, "multi")
    dest = registry.ref("alice/multi:latest")
    await skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout.path}:multi", dest)

    raw = await skopeo("inspect", "--tls-verify=false", "--raw", dest)
    assert raw.stdout.encode() == index.data
    out = tmp_path / "pulled"
    await skopeo("copy", "--all", "--src-tls-verify=false", dest, f"oci:{out}:multi")
    for image in images:
        for blob in [*image.blobs, image.manifest]:
            data = (out / "blobs" / "sha256" / blob.digest.removeprefix("sha256:")).read_bytes()
            assert data == blob.data


async def test_docker_v2s2_format(skopeo: Skopeo, registry: Registry, tmp_path: Path) -> None:
    layout, image = two_layer_image(tmp_path)
    dest = registry.ref("alice/docker:v2s2")
    await skopeo("copy", "--format", "v2s2", "--dest-tls-verify=false", f"oci:{layout}:v1", dest)
    raw = json.loads((await skopeo("inspect", "--tls-verify=false", "--raw", dest)).stdout)
    assert raw["mediaType"] == DOCKER_V2S2
    assert [layer["digest"] for layer in raw["layers"]] == [b.digest for b in image.layers]
    out = tmp_path / "pulled"
    await skopeo("copy", "--src-tls-verify=false", dest, f"dir:{out}")
    pulled = oci.rehash_dir(out)
    assert {b.digest for b in image.layers} <= set(pulled)


async def test_cross_repo_mount_then_delete(
    skopeo: Skopeo, registry: Registry, tmp_path: Path, db: asyncpg.Connection
) -> None:
    layout, image = two_layer_image(tmp_path)
    await skopeo(
        "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", registry.ref("alice/app:v1")
    )
    # Same client (same blob-info cache): it asks to mount from alice/app.
    await skopeo(
        "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", registry.ref("alice/copy:v1")
    )
    log = registry.server.log()
    assert "from=alice/app" in log or "from=alice%2Fapp" in log
    linked = await db.fetchval(
        """
        SELECT count(*) FROM v2_repository_blobs l JOIN repositories r USING (repository_id)
        WHERE r.name = 'copy'
        """
    )
    assert linked == len(image.blobs)
    # Every upload session (mount refused or not) is gone.
    assert await db.fetchval("SELECT count(*) FROM v2_uploads") == 0

    await skopeo("delete", "--tls-verify=false", registry.ref("alice/app:v1"))
    gone = await skopeo("inspect", "--tls-verify=false", registry.ref("alice/app:v1"), check=False)
    assert gone.returncode != 0
    assert "manifest unknown" in gone.stderr.lower()
    # The other repository still has its copy.
    await skopeo("inspect", "--tls-verify=false", registry.ref("alice/copy:v1"))


async def test_v1_push_then_v2_push_and_pull_share_one_blob(
    skopeo: Skopeo, registry: Registry, tmp_path: Path, db: asyncpg.Connection
) -> None:
    layer = oci.make_layer("shared", 500_000)
    v1_image = make_v1_image("one-store", layer.data)
    async with aiohttp.ClientSession(base_url=registry.server.url) as http:
        await V1Client(http).push("alice/app", "old", [v1_image])

    image = oci.make_image([layer])
    layout = oci.Layout(tmp_path / "layout")
    layout.add_image(image, "new")
    dest = registry.ref("alice/app:new")
    await skopeo("copy", "--dest-tls-verify=false", f"oci:{layout.path}:new", dest)
    out = tmp_path / "pulled"
    await skopeo("copy", "--src-tls-verify=false", dest, f"dir:{out}")
    assert oci.rehash_dir(out)[layer.digest] == len(layer.data)

    assert await db.fetchval("SELECT count(*) FROM blobs WHERE digest = $1", layer.digest) == 1
    assert (
        await db.fetchval("SELECT count(*) FROM v1_images WHERE layer_digest = $1", layer.digest)
        == 1
    )
    assert await db.fetchval("SELECT count(*) FROM repositories") == 1  # one alice/app
    files = list((tmp_path / "data" / "storage" / "blobs").rglob(layer.digest.split(":")[1]))
    assert len(files) == 1


async def test_plain_http_port_survives_tls_hello(
    skopeo: Skopeo, registry: Registry, tmp_path: Path
) -> None:
    """skopeo tries HTTPS first (a TLS ClientHello on our HTTP port), then falls back."""
    layout, _ = two_layer_image(tmp_path)
    await skopeo(
        "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", registry.ref("alice/app:v1")
    )
    assert "Traceback" not in registry.server.log()


@pytest.mark.slow
async def test_layer_of_200_mib(skopeo: Skopeo, registry: Registry, tmp_path: Path) -> None:
    """An uncompressed layer, which skopeo gzips while pushing: a streamed PATCH of unknown
    length (chunked transfer-encoding)."""
    big = oci.make_layer("big", 200 * 1024 * 1024, compress=False)
    image = oci.make_image([big])
    layout = oci.Layout(tmp_path / "layout")
    layout.add_image(image, "big")
    dest = registry.ref("alice/big:1")
    await skopeo("copy", "--dest-tls-verify=false", f"oci:{layout.path}:big", dest)
    out = tmp_path / "pulled"
    await skopeo("copy", "--src-tls-verify=false", dest, f"dir:{out}")
    pulled = oci.rehash_dir(out)
    assert pulled.pop(image.config.digest) == len(image.config.data)
    [(digest, size)] = pulled.items()
    assert size > 200 * 1024 * 1024
    with gzip.open(out / digest.removeprefix("sha256:"), "rb") as layer:
        diff_id = hashlib.file_digest(layer, "sha256").hexdigest()
    assert "sha256:" + diff_id == big.digest


async def test_tls_client_hello_on_the_http_port_is_refused_cleanly(registry: Registry) -> None:
    """What every containers/image session starts with (spec §5): a 400, and on we go."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    host, port = registry.host.split(":")
    with pytest.raises(ssl.SSLError):
        await asyncio.open_connection(host, int(port), ssl=context)
    async with aiohttp.ClientSession(base_url=registry.server.url) as http:
        resp = await http.get("/v2/")
        assert resp.status == 200
    log = registry.server.log()
    # The access log is JSON lines: the refused request line, with its status.
    refused = [line for line in log.splitlines() if "UNKNOWN / HTTP/1.0" in line]
    assert refused
    assert '"status":400' in refused[0]
    assert "Traceback" not in log
    assert "ERROR" not in log
    assert '"level":"error"' not in log


async def test_token_flow_push_with_credentials_pull_anonymously(
    skopeo: Skopeo, start_registry: StartRegistry, tmp_path: Path
) -> None:
    registry = start_registry(REGISTRYD_AUTH_MODE="token")
    async with aiohttp.ClientSession(base_url=registry.server.url) as http:
        for user in ("alice", "bob_b"):
            docker = DockerV1(http, user, "secret-pw")
            assert await docker.login(email=f"{user}@example.com") == 201
    layout, image = two_layer_image(tmp_path)
    source = f"oci:{layout}:v1"
    dest = registry.ref("alice/app:v1")

    refused = await skopeo("copy", "--dest-tls-verify=false", source, dest, check=False)
    assert refused.returncode != 0
    assert "authentication required" in refused.stderr or "unauthorized" in refused.stderr
    refused = await skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "bob_b:secret-pw",
        source,
        dest,
        check=False,
    )
    assert refused.returncode != 0

    await skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:secret-pw", source, dest)
    out = tmp_path / "pulled"
    await skopeo("copy", "--src-tls-verify=false", dest, f"dir:{out}")  # anonymous pull
    assert oci.rehash_dir(out) == {b.digest: len(b.data) for b in image.blobs}
    wrong = await skopeo(
        "inspect", "--tls-verify=false", "--creds", "alice:wrong", dest, check=False
    )
    assert wrong.returncode != 0


async def test_podman_pull_and_push(skopeo: Skopeo, registry: Registry, tmp_path: Path) -> None:
    """podman as root without a daemon: pull into private storage, push to another repository."""
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("podman is not installed (optional: skopeo covers containers/image)")
    layout, image = two_layer_image(tmp_path)
    await skopeo(
        "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", registry.ref("alice/app:v1")
    )
    # podman limits the runroot path to 50 characters: a short temp directory.
    with tempfile.TemporaryDirectory(prefix="rd-podman-") as runroot:
        await _podman(podman, skopeo.home, tmp_path / "podman-root", Path(runroot), registry.host)
    inspected = json.loads(
        (await skopeo("inspect", "--tls-verify=false", registry.ref("alice/pod:v1"))).stdout
    )
    assert len(inspected["Layers"]) == len(image.layers)


async def _podman(podman: str, home: Path, root: Path, runroot: Path, host: str) -> None:
    storage = ["--root", str(root), "--runroot", str(runroot), "--storage-driver", "vfs"]
    for args in (
        ["pull", "--tls-verify=false", f"{host}/alice/app:v1"],
        ["push", "--tls-verify=false", f"{host}/alice/app:v1", f"{host}/alice/pod:v1"],
    ):
        proc = await asyncio.create_subprocess_exec(
            podman,
            *storage,
            *args,
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(home)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 300)
        assert proc.returncode == 0, f"podman {args[0]} failed:\n{err.decode()}"
