"""Real clients pull through the mirror: skopeo by the namespace prefix, containerd's ``ctr``
through a ``hosts.toml`` mirror (the ``?ns=`` protocol), unpacking what it pulled."""

from __future__ import annotations

from pathlib import Path

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
