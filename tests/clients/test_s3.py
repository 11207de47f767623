"""The real clients on the s3 backend (moto's S3 server), with redirects on and off,
and two replicas that share one PostgreSQL and one bucket.

The client tests of test_skopeo.py and test_containerd.py run here unchanged
against an s3-backed registry: the same pushes, pulls and re-hashes.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

import aiohttp
import pytest

from registryd.storage.s3 import S3Backend
from tests.clients import test_containerd, test_skopeo
from tests.clients.conftest import Registry, Skopeo
from tests.clients.test_containerd import Ctr, ctr
from tests.process.conftest import Launcher, run_cli
from tests.support import oci_layout as oci
from tests.support.images import make_image as make_v1_image
from tests.support.s3_server import S3Server
from tests.support.v1client import V1Client

__all__ = ["ctr"]  # the fixture, from test_containerd


def s3_env(server: S3Server, bucket: str, *, redirect: bool) -> dict[str, str]:
    return {
        "REGISTRYD_STORAGE": "s3",
        "REGISTRYD_S3_BUCKET": bucket,
        "REGISTRYD_S3_ENDPOINT_URL": server.url,
        "REGISTRYD_S3_PATH_STYLE": "true",
        "REGISTRYD_S3_REDIRECT": "true" if redirect else "false",
        "REGISTRYD_S3_PART_BYTES": "5MiB",
    }


@pytest.fixture(params=[True, False], ids=["redirect", "proxied"])
def s3_registry(
    request: pytest.FixtureRequest,
    launcher: Launcher,
    tmp_path: Path,
    database_url: str,
    s3_server: S3Server,
    s3_bucket: str,
) -> Registry:
    env = s3_env(s3_server, s3_bucket, redirect=request.param)
    return Registry(launcher.start(tmp_path / "data", database_url, env=env))


async def _blob_get_status(registry: Registry, name: str, digest: str) -> int:
    async with (
        aiohttp.ClientSession(base_url=registry.server.url) as http,
        http.get(f"/v2/{name}/blobs/{digest}", allow_redirects=False) as resp,
    ):
        return resp.status


async def test_skopeo_push_inspect_pull_and_rehash(
    skopeo: Skopeo, s3_registry: Registry, tmp_path: Path
) -> None:
    await test_skopeo.test_push_inspect_list_tags_pull_and_rehash(skopeo, s3_registry, tmp_path)
    # The layers went to the bucket: no blob file exists on the server's disk.
    assert not list((tmp_path / "data" / "storage" / "blobs").rglob("*"))


async def test_blob_get_redirects_or_streams_with_ranges(
    skopeo: Skopeo, s3_registry: Registry, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    layout, image = test_skopeo.two_layer_image(tmp_path)
    await skopeo(
        "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", s3_registry.ref("alice/app:v1")
    )
    layer = image.layers[1]
    redirect = "redirect" in request.node.callspec.id
    url = f"/v2/alice/app/blobs/{layer.digest}"
    async with aiohttp.ClientSession(base_url=s3_registry.server.url) as http:
        async with http.get(url, allow_redirects=False) as first:
            assert first.status == (307 if redirect else 200)
            assert first.headers["Docker-Content-Digest"] == layer.digest
            if redirect:
                assert first.headers["Location"].startswith("http://127.0.0.1:")
                assert "X-Amz-Signature=" in first.headers["Location"]
        # Followed (redirect) or not, the bytes and a Range are right.
        async with http.get(url) as whole:
            assert whole.status == 200
            assert hashlib.sha256(await whole.read()).hexdigest() == layer.digest.split(":")[1]
        async with http.get(url, headers={"Range": "bytes=100-199"}) as part:
            assert part.status == 206
            assert await part.read() == layer.data[100:200]
        # HEAD never redirects, and says the size.
        async with http.head(url, allow_redirects=False) as head:
            assert head.status == 200
            assert head.headers["Content-Length"] == str(len(layer.data))
        # A Range that selects nothing is 416 from the registry, never a redirect to a
        # bucket that ignores it and sends the whole blob (moto and S3 do).
        for unsatisfiable in ("bytes=500-0", f"bytes={len(layer.data)}-"):
            headers = {"Range": unsatisfiable}
            async with http.get(url, headers=headers, allow_redirects=False) as nothing:
                assert nothing.status == 416
                assert nothing.headers["Content-Range"] == f"bytes */{len(layer.data)}"
        # A blob the repository does not hold is 404 before any redirect.
        async with http.get(
            f"/v2/bob/other/blobs/{layer.digest}", allow_redirects=False
        ) as missing:
            assert missing.status == 404


async def test_podman_pull_and_push(skopeo: Skopeo, s3_registry: Registry, tmp_path: Path) -> None:
    await test_skopeo.test_podman_pull_and_push(skopeo, s3_registry, tmp_path)


async def test_containerd_pull_unpack_and_push(
    ctr: Ctr, skopeo: Skopeo, s3_registry: Registry, tmp_path: Path
) -> None:
    await test_containerd.test_pull_unpack_and_push(ctr, skopeo, s3_registry, tmp_path)


# Two replicas ------------------------------------------------------------------


@pytest.fixture
def replicas(
    launcher: Launcher, tmp_path: Path, database_url: str, s3_server: S3Server, s3_bucket: str
) -> tuple[Registry, Registry]:
    """Two servers sharing one database and one bucket, each with its own disk."""
    env = s3_env(s3_server, s3_bucket, redirect=True)
    return (
        Registry(launcher.start(tmp_path / "a", database_url, env=env)),
        Registry(launcher.start(tmp_path / "b", database_url, env=env)),
    )


async def test_push_through_one_replica_pull_through_the_other(
    skopeo: Skopeo, ctr: Ctr, replicas: tuple[Registry, Registry], tmp_path: Path
) -> None:
    a, b = replicas
    layout, image = test_skopeo.two_layer_image(tmp_path)
    await skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", a.ref("alice/app:v1"))
    out = tmp_path / "pulled"
    await skopeo("copy", "--src-tls-verify=false", b.ref("alice/app:v1"), f"dir:{out}")
    assert oci.rehash_dir(out) == {blob.digest: len(blob.data) for blob in image.blobs}
    await ctr.pull(f"{b.host}/alice/app:v1")
    assert {blob.digest for blob in image.blobs} <= await ctr.content_digests()


async def test_a_chunked_upload_alternates_between_replicas(
    replicas: tuple[Registry, Registry],
) -> None:
    a, b = replicas
    # Chunks below and above S3's 5 MiB part minimum, each PATCH to the other replica.
    chunks = [b"first", bytes(range(256)) * 24576, b"x" * 1000, b"last"]
    data = b"".join(chunks)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{a.server.url}/v2/alice/chunked/blobs/uploads/") as started:
            assert started.status == 202
            location = started.headers["Location"]
        offset = 0
        for number, chunk in enumerate(chunks):
            server = (a, b)[number % 2].server.url
            async with http.patch(
                server + location,
                data=io.BytesIO(chunk),
                headers={
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    "Content-Type": "application/octet-stream",
                },
            ) as patched:
                assert patched.status == 202, await patched.text()
                location = patched.headers["Location"]
            offset += len(chunk)
        async with http.put(f"{b.server.url}{location}", params={"digest": digest}) as done:
            assert done.status == 201, await done.text()
        for replica in (a, b):
            async with http.get(f"{replica.server.url}/v2/alice/chunked/blobs/{digest}") as got:
                assert got.status == 200
                assert await got.read() == data


async def test_v1_layers_are_streamed_never_redirected(s3_registry: Registry) -> None:
    """docker 1.x sends its registry Authorization on redirected layer GETs too, which
    S3 refuses next to a presigned URL (README): v1 layers always come through the server."""
    layer = oci.make_layer("v1-on-s3", 6 * 1024 * 1024).data
    image = make_v1_image("v1-on-s3", layer)
    async with aiohttp.ClientSession(base_url=s3_registry.server.url) as http:
        await V1Client(http).push("alice/old", "latest", [image])
        [(image_id, _, pulled)] = await V1Client(http).pull("alice/old", "latest")
        assert image_id == image.image_id
        assert pulled == layer
        url = f"/v1/images/{image.image_id}/layer"
        async with http.get(url, allow_redirects=False) as resp:
            assert resp.status == 200
            assert hashlib.sha256(await resp.read()).digest() == hashlib.sha256(layer).digest()
        async with http.get(url, headers={"Range": "bytes=5242870-5242889"}) as part:
            assert part.status == 206
            assert await part.read() == layer[5242870:5242890]


async def test_scrub_then_delete_then_gc_frees_the_objects(
    skopeo: Skopeo,
    launcher: Launcher,
    tmp_path: Path,
    database_url: str,
    s3_server: S3Server,
    s3_bucket: str,
) -> None:
    """``registryd scrub`` re-hashes and ``registryd gc`` deletes through the s3 backend."""
    env = s3_env(s3_server, s3_bucket, redirect=True)
    registry = Registry(launcher.start(tmp_path / "data", database_url, env=env))
    layout, image = test_skopeo.two_layer_image(tmp_path)
    await skopeo(
        "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", registry.ref("alice/app:v1")
    )
    observer = S3Backend(s3_bucket, endpoint_url=s3_server.url, path_style=True)
    await observer.start()
    try:
        stored = {str(d) async for d in observer.list_blobs()}
        assert stored == {blob.digest for blob in image.blobs}
        cli_env = {
            **env,
            "REGISTRYD_DATABASE_URL": database_url,
            "REGISTRYD_DATA_DIR": str(tmp_path / "data"),
            "REGISTRYD_GC_GRACE_SECONDS": "0",
        }
        scrubbed = await asyncio.to_thread(run_cli, "scrub", env=cli_env)
        assert scrubbed.returncode == 0, scrubbed.stderr + scrubbed.stdout
        await skopeo("delete", "--tls-verify=false", registry.ref("alice/app:v1"))
        collected = await asyncio.to_thread(run_cli, "gc", env=cli_env)
        assert collected.returncode == 0, collected.stderr
        assert f"removed {len(image.blobs)} blob file(s)" in collected.stdout
        assert [d async for d in observer.list_blobs()] == []
    finally:
        await observer.close()
