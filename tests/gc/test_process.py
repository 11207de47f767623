"""``registryd gc`` as a real process: next to a running server, killed mid-run, freeing disk."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from registryd.config import Settings
from registryd.domain.services import Services
from registryd.gc.scrub import scrub
from registryd.storage import paths
from tests.gc.conftest import age_everything, store_garbage, stored
from tests.process.conftest import Launcher, run_cli, serve_argv
from tests.support.content import sha256
from tests.support.images import random_bytes
from tests.support.v2client import V2Client


def gc_env(settings: Settings, **extra: str) -> dict[str, str]:
    assert settings.database_url is not None
    return {
        "REGISTRYD_DATABASE_URL": settings.database_url,
        "REGISTRYD_DATA_DIR": str(settings.data_dir),
        **extra,
    }


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """Outside pytest's temp root, which is private to root: as root, the embedded
    PostgreSQL runs as another user that must reach its data directory."""
    directory = Path(tempfile.mkdtemp(prefix="registryd-gc-test-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


async def test_gc_next_to_a_server_on_the_embedded_default_uses_its_database(
    launcher: Launcher, shared_dir: Path
) -> None:
    data_dir = shared_dir / "data"
    server = launcher.start(data_dir, None)
    pidfile = data_dir / "postgres" / "postmaster.pid"
    postmaster = pidfile.read_text().split()[0]
    async with aiohttp.ClientSession(base_url=server.url) as http:
        v2 = V2Client(http)
        kept = await v2.push_image("alice/app", "v1", [random_bytes(1000, 1)])
        garbage = await v2.push_blob("alice/app", random_bytes(1000, 2))
        env = {"REGISTRYD_DATA_DIR": str(data_dir), "REGISTRYD_GC_GRACE_SECONDS": "0"}
        done = await asyncio.to_thread(run_cli, "gc", env=env)
        assert done.returncode == 0, done.stderr
        assert "removed 1 blob(s)" in done.stdout
        assert "finished" in done.stdout
        # The server's PostgreSQL served both and still runs; the server still serves.
        assert pidfile.read_text().split()[0] == postmaster
        status, _, _ = await v2.call("GET", f"/v2/alice/app/manifests/{sha256(kept)}")
        assert status == 200
        status, _, _ = await v2.call("GET", f"/v2/alice/app/blobs/{garbage}")
        assert status == 404
    assert await asyncio.to_thread(server.stop) == 0
    assert not pidfile.exists()
    # With no server running, gc starts the embedded PostgreSQL itself, and stops it.
    done = await asyncio.to_thread(run_cli, "gc", "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    assert "would remove 0 blob(s)" in done.stdout
    assert not pidfile.exists()


async def test_kill_9_mid_run_then_the_next_run_finishes_and_the_store_is_consistent(
    settings: Settings, svc: Services, db: asyncpg.Connection
) -> None:
    count = 8000
    await store_garbage(settings, db, count)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRYD_")}
    env.update(gc_env(settings))
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once; only waited on off the loop
        [serve_argv()[0], "gc"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(2000):
            left = await db.fetchval("SELECT count(*) FROM blobs")
            if left < count:
                break
            await asyncio.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        await asyncio.to_thread(proc.wait, 10)
    left = await db.fetchval("SELECT count(*) FROM blobs")
    assert 0 < left < count, "the kill should land mid-run"
    # Consistent after the crash: rows whose file went are gone, files of deleted rows
    # are either gone or recorded for removal, and scrub finds nothing wrong.
    assert (await scrub(svc)).clean
    pending = await db.fetchval("SELECT count(*) FROM blob_deletions")

    done = await asyncio.to_thread(run_cli, "gc", env=gc_env(settings))
    assert done.returncode == 0, done.stderr
    assert "finished" in done.stdout
    assert f"removed {left} blob(s)" in done.stdout
    # Files of the killed run's pending removals count unless it removed them before dying.
    files = int(done.stdout.split(" blob file(s)")[0].rsplit("removed ", 1)[1])
    assert left <= files <= left + pending
    assert await db.fetchval("SELECT count(*) FROM blobs") == 0
    assert await db.fetchval("SELECT count(*) FROM blob_deletions") == 0
    assert list(paths.blobs_dir(settings.storage_root).rglob("*/*/*")) == []
    assert (await scrub(svc)).clean


def _deleted_but_open(pid: int, root: Path) -> list[str]:
    held = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith(str(root)) and target.endswith("(deleted)"):
            held.append(target)
    return held


@pytest.fixture
def private_fs(tmp_path: Path) -> Iterator[Path | None]:
    """A tmpfs of our own when we may mount one (root): statvfs on a filesystem other
    processes write to measures their writes too. None when mounting is not allowed."""
    mountpoint = tmp_path / "private-fs"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        yield None
        return
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


async def test_disk_space_is_really_returned(
    launcher: Launcher, settings: Settings, db: asyncpg.Connection, private_fs: Path | None
) -> None:
    if private_fs is not None:
        settings = dataclasses.replace(settings, data_dir=private_fs / "data")
    server = launcher.start(settings.data_dir, settings.database_url)
    layers = [random_bytes(24 * 1024 * 1024, 10 + i) for i in range(3)]
    async with aiohttp.ClientSession(base_url=server.url) as http:
        v2 = V2Client(http)
        manifests = [
            await v2.push_image(f"alice/big{i}", "v1", [layer]) for i, layer in enumerate(layers)
        ]
        for i, layer in enumerate(layers):  # the server now keeps these files open
            status, body, _ = await v2.call("GET", f"/v2/alice/big{i}/blobs/{sha256(layer)}")
            assert status == 200
            assert hashlib.sha256(body).hexdigest() == sha256(layer).removeprefix("sha256:")
        for i, manifest in enumerate(manifests):
            status, _, _ = await v2.call("DELETE", f"/v2/alice/big{i}/manifests/{sha256(manifest)}")
            assert status == 202
        await age_everything(db)
        before = os.statvfs(settings.storage_root)
        done = await asyncio.to_thread(run_cli, "gc", env=gc_env(settings))
        assert done.returncode == 0, done.stderr
        assert "removed 4 blob file(s)" in done.stdout  # three layers and their config
        await asyncio.sleep(3)  # the server closes descriptors of removed files every 2 s
        after = os.statvfs(settings.storage_root)
        assert _deleted_but_open(server.pid, settings.data_dir) == []
    for layer in layers:
        assert not stored(settings, sha256(layer))
    freed = (after.f_bavail - before.f_bavail) * after.f_frsize
    if private_fs is not None:
        assert freed >= 3 * 24 * 1024 * 1024, freed
    else:  # a shared filesystem: others' writes meanwhile blur the figure
        assert freed > 24 * 1024 * 1024, freed
