"""``registryd scrub [--repair]``: corrupt files, files without rows, rows without files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from registryd.config import Settings
from registryd.digest import Digest
from registryd.domain.services import Services
from registryd.gc.scrub import CORRUPT, LOST, ORPHAN, scrub
from registryd.storage import paths
from tests.conftest import Client
from tests.process.conftest import run_cli
from tests.support.content import sha256
from tests.support.images import random_bytes
from tests.support.v2client import V2Client

GOOD, BAD, GONE, STRAY = (random_bytes(2000, 300 + i) for i in range(4))


def path_of(settings: Settings, data: bytes) -> Path:
    return paths.blob_path(settings.storage_root, Digest.parse(sha256(data)))


async def damaged_store(client: Client, settings: Settings) -> V2Client:
    v2 = V2Client(client)
    for blob in (GOOD, BAD, GONE):
        await v2.push_blob("alice/app", blob)
    path_of(settings, BAD).write_bytes(b"bit rot" + BAD[7:])
    path_of(settings, GONE).unlink()
    stray = path_of(settings, STRAY)
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(STRAY)  # left by a crash between rename and commit
    return v2


async def test_scrub_finds_each_problem_and_repair_lets_clients_push_again(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    v2 = await damaged_store(client, settings)
    report = await scrub(svc)
    assert sorted(report.problems) == sorted(
        [(CORRUPT, sha256(BAD)), (LOST, sha256(GONE)), (ORPHAN, sha256(STRAY))]
    )
    assert report.checked == 3
    assert not report.clean
    assert path_of(settings, BAD).exists()  # without --repair nothing changes

    repaired = await scrub(svc, repair=True)
    assert sorted(repaired.repaired) == sorted(sha256(b) for b in (BAD, GONE, STRAY))
    assert not path_of(settings, BAD).exists()
    assert not path_of(settings, STRAY).exists()
    assert (await scrub(svc)).clean
    # The repository no longer claims the blobs, so a client pushes them again.
    for blob in (BAD, GONE):
        status, _, _ = await v2.call("HEAD", f"/v2/alice/app/blobs/{sha256(blob)}")
        assert status == 404
        await v2.push_blob("alice/app", blob)
        status, body, _ = await v2.call("GET", f"/v2/alice/app/blobs/{sha256(blob)}")
        assert status == 200
        assert body == blob
    assert (await scrub(svc)).clean


async def test_scrub_command_prints_a_table_and_exits_1_until_repaired(
    client: Client, settings: Settings
) -> None:
    await damaged_store(client, settings)
    assert settings.database_url is not None
    env = {
        "REGISTRYD_DATABASE_URL": settings.database_url,
        "REGISTRYD_DATA_DIR": str(settings.data_dir),
    }
    found = await asyncio.to_thread(run_cli, "scrub", env=env)
    assert found.returncode == 1, found.stderr
    assert f"{CORRUPT}" in found.stdout
    assert sha256(BAD) in found.stdout
    assert "3 problem(s)" in found.stdout
    repaired = await asyncio.to_thread(run_cli, "scrub", "--repair", env=env)
    assert repaired.returncode == 1  # something was wrong; now it is repaired
    assert "yes" in repaired.stdout
    clean = await asyncio.to_thread(run_cli, "scrub", env=env)
    assert clean.returncode == 0, clean.stdout
    assert "0 problem(s)" in clean.stdout
