"""Real clients' delete flows followed by ``registryd gc``: the bytes are freed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from tests.clients.conftest import Registry, Skopeo, registry, skopeo, start_registry
from tests.clients.test_containerd import Ctr, ctr
from tests.process.conftest import run_cli
from tests.support import oci_layout as oci

__all__ = ["ctr", "registry", "skopeo", "start_registry"]  # fixtures shared with tests/clients


def gc_env(registry: Registry, database_url: str) -> dict[str, str]:
    data_dir = registry.server.log_path.parent / "data"
    return {
        "REGISTRYD_DATABASE_URL": database_url,
        "REGISTRYD_DATA_DIR": str(data_dir),
        "REGISTRYD_GC_GRACE_SECONDS": "0",
    }


def blob_files(registry: Registry) -> list[Path]:
    root = registry.server.log_path.parent / "data" / "storage" / "blobs"
    return [p for p in root.rglob("*") if p.is_file()]


async def test_skopeo_delete_then_gc_frees_the_bytes(
    skopeo: Skopeo, registry: Registry, tmp_path: Path, database_url: str
) -> None:
    image = oci.make_image([oci.make_layer("gc-a", 300_000), oci.make_layer("gc-b", 700_000)])
    layout = oci.Layout(tmp_path / "layout")
    layout.add_image(image, "v1")
    await skopeo(
        "copy", "--dest-tls-verify=false", f"oci:{layout.path}:v1", registry.ref("alice/app:v1")
    )
    assert len(await asyncio.to_thread(blob_files, registry)) == len(image.blobs)
    await skopeo("delete", "--tls-verify=false", registry.ref("alice/app:v1"))
    done = await asyncio.to_thread(run_cli, "gc", env=gc_env(registry, database_url))
    assert done.returncode == 0, done.stderr
    assert f"removed {len(image.blobs)} blob file(s)" in done.stdout
    assert await asyncio.to_thread(blob_files, registry) == []


async def test_ctr_push_then_delete_then_gc_keeps_what_is_still_tagged(
    ctr: Ctr,
    skopeo: Skopeo,
    registry: Registry,
    tmp_path: Path,
    database_url: str,
    db: asyncpg.Connection,
) -> None:
    image = oci.make_image([oci.make_layer("gc-c", 200_000), oci.make_layer("gc-d", 500_000)])
    layout = oci.Layout(tmp_path / "layout")
    layout.add_image(image, "v1")
    await skopeo(
        "copy", "--dest-tls-verify=false", f"oci:{layout.path}:v1", registry.ref("alice/app:v1")
    )
    await ctr.pull(f"{registry.host}/alice/app:v1")
    await ctr("images", "tag", f"{registry.host}/alice/app:v1", f"{registry.host}/alice/copy:v2")
    await ctr("images", "push", "--plain-http", f"{registry.host}/alice/copy:v2")
    await skopeo("delete", "--tls-verify=false", registry.ref("alice/app:v1"))
    done = await asyncio.to_thread(run_cli, "gc", env=gc_env(registry, database_url))
    assert done.returncode == 0, done.stderr
    assert "removed 0 blob(s)" in done.stdout  # alice/copy:v2 still uses every blob
    await skopeo("delete", "--tls-verify=false", registry.ref("alice/copy:v2"))
    done = await asyncio.to_thread(run_cli, "gc", env=gc_env(registry, database_url))
    assert f"removed {len(image.blobs)} blob file(s)" in done.stdout
    assert await asyncio.to_thread(blob_files, registry) == []
    assert await db.fetchval("SELECT count(*) FROM blobs") == 0
