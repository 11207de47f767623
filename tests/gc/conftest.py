"""Garbage collection tests: the app on a socket, and a collector on the same database and store."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from registryd.config import Settings
from registryd.db.pool import create_pool
from registryd.domain.services import Services
from registryd.gc.collector import Collector
from registryd.gc.report import Report
from registryd.storage import paths
from registryd.storage.filesystem import FilesystemBackend
from tests.process.conftest import Launcher
from tests.support.content import sha256


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No grace period (tests age rows instead) and no collector of the app's own."""
    return dataclasses.replace(settings, gc_grace_seconds=0, gc_interval_seconds=0)


@pytest.fixture
async def svc(settings: Settings) -> AsyncIterator[Services]:
    """What a ``registryd gc`` process has: its own pool and storage backend."""
    storage = FilesystemBackend(settings.storage_root)
    await storage.start()
    assert settings.database_url is not None
    pool = await create_pool(settings.database_url, settings)
    yield Services(pool, storage, settings, b"")
    await pool.close()
    await storage.close()


async def collect(
    svc: Services, *, dry_run: bool = False, grace: int = 0, untagged: int = 0
) -> Report:
    settings = dataclasses.replace(
        svc.settings, gc_grace_seconds=grace, gc_untagged_seconds=untagged
    )
    return await Collector(dataclasses.replace(svc, settings=settings)).run(dry_run=dry_run)


def stored(settings: Settings, digest: str) -> bool:
    algorithm, hex_ = digest.split(":")
    return (paths.blobs_dir(settings.storage_root) / algorithm / hex_[:2] / hex_).exists()


async def blob_rows(db: asyncpg.Connection) -> set[str]:
    return {r["digest"] for r in await db.fetch("SELECT digest FROM blobs")}


async def age_everything(db: asyncpg.Connection, seconds: int = 7200) -> None:
    """Make every row look ``seconds`` old (as if pushed that long ago)."""
    interval = f"{seconds} seconds"
    await db.execute(f"UPDATE blobs SET created_at = created_at - interval '{interval}'")
    await db.execute(
        f"UPDATE v2_repository_blobs SET created_at = created_at - interval '{interval}'"
    )
    await db.execute(f"UPDATE v2_manifests SET created_at = created_at - interval '{interval}'")
    await db.execute(f"UPDATE v1_images SET updated_at = updated_at - interval '{interval}'")
    await db.execute(f"UPDATE v2_uploads SET updated_at = updated_at - interval '{interval}'")
    for queue in ("blob", "link", "manifest", "v1_image"):
        await db.execute(
            f"UPDATE gc_{queue}_reviews SET review_after = review_after - interval '{interval}'"
        )


async def store_garbage(settings: Settings, db: asyncpg.Connection, count: int) -> None:
    """``count`` old, unreferenced blobs, rows and files, made directly (fast)."""
    contents = [f"garbage {i}".encode() for i in range(count)]
    digests = [sha256(c) for c in contents]
    for digest, content in zip(digests, contents, strict=True):
        hex_ = digest.removeprefix("sha256:")
        path = paths.blobs_dir(settings.storage_root) / "sha256" / hex_[:2] / hex_
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    await db.copy_records_to_table(
        "blobs",
        records=[(d, len(c)) for d, c in zip(digests, contents, strict=True)],
        columns=["digest", "size_bytes"],
    )
    await age_everything(db)


class PauseAt:
    """A collector pause hook: stops the first time ``point`` is reached until released."""

    def __init__(self, point: str) -> None:
        self.point = point
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, name: str) -> None:
        if name == self.point and not self.reached.is_set():
            self.reached.set()
            await self.release.wait()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    """Server processes, killed at the end if a test left them running."""
    launch = Launcher(tmp_path)
    yield launch
    for server in launch.started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)
