"""A storm: pushes with shared layers, tag moves, deletes, pulls and mounts on one replica while
another replica collects every second. Nothing live may be lost, no request may fail, and
afterwards nothing unreferenced and older than the grace period remains."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter

import aiohttp
import asyncpg
import pytest

from registryd.config import Settings
from registryd.domain.services import Services
from registryd.gc.scrub import scrub
from tests.process.conftest import Launcher, run_cli
from tests.support.content import sha256
from tests.support.v2client import V2Client, image_manifest

GRACE = "3"
SHARED = [random.Random(i).randbytes(20_000) for i in range(6)]
REPOS = [f"storm/r{i}" for i in range(4)]


class Failures(Counter[str]):
    pass


async def _pull_completely(v2: V2Client, repo: str, reference: str, failures: Failures) -> None:
    """A manifest and all its blobs, re-hashed; a blob may be missing only if the manifest
    was deleted meanwhile (by another client)."""
    status, body, _ = await v2.call("GET", f"/v2/{repo}/manifests/{reference}")
    if status == 404:
        return
    if status != 200:
        failures[f"manifest GET {status}"] += 1
        return
    manifest = json.loads(body)
    for blob in [manifest["config"], *manifest["layers"]]:
        status, data, _ = await v2.call("GET", f"/v2/{repo}/blobs/{blob['digest']}")
        if status == 200 and sha256(data) == blob["digest"]:
            continue
        gone, _, _ = await v2.call("GET", f"/v2/{repo}/manifests/{sha256(body)}")
        if status != 404 or gone != 404:
            failures[f"blob of a live manifest: {status}"] += 1


async def _client(url: str, seed: int, until: float, failures: Failures, ops: Counter[str]) -> None:
    rng = random.Random(seed)
    async with aiohttp.ClientSession(base_url=url) as http:
        v2 = V2Client(http)
        n = 0
        while time.monotonic() < until:
            n += 1
            repo = rng.choice(REPOS)
            action = rng.random()
            try:
                if action < 0.4:
                    layers = [rng.choice(SHARED), f"{seed}-{n}".encode() * 100]
                    tag = f"t{rng.randrange(3)}"  # tags move between pushes
                    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
                    for blob in [config, *layers]:
                        await v2.push_blob(repo, blob)
                    status, body, _ = await v2.push_manifest(
                        repo, tag, image_manifest(config, layers)
                    )
                    if status != 201:
                        failures[f"manifest PUT {status} {body[:80]!r}"] += 1
                    ops["push"] += 1
                elif action < 0.55:
                    status, _, _ = await v2.call(
                        "DELETE", f"/v2/{repo}/manifests/t{rng.randrange(3)}"
                    )
                    if status not in (202, 404):
                        failures[f"tag DELETE {status}"] += 1
                    ops["untag"] += 1
                elif action < 0.65:
                    status, body, _ = await v2.call("GET", f"/v2/{repo}/manifests/t0")
                    if status == 200:
                        status, _, _ = await v2.call(
                            "DELETE", f"/v2/{repo}/manifests/{sha256(body)}"
                        )
                        if status not in (202, 404):
                            failures[f"manifest DELETE {status}"] += 1
                    ops["delete"] += 1
                elif action < 0.75:
                    digest = sha256(rng.choice(SHARED))
                    source = rng.choice(REPOS)
                    status, _, headers = await v2.call(
                        "POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}"
                    )
                    if status == 202:  # not mountable (now): an upload session instead
                        await v2.call("DELETE", headers["Location"])
                    elif status != 201:
                        failures[f"mount {status}"] += 1
                    ops["mount"] += 1
                else:
                    await _pull_completely(v2, repo, f"t{rng.randrange(3)}", failures)
                    ops["pull"] += 1
            except aiohttp.ClientError as exc:
                failures[f"client error {type(exc).__name__}"] += 1


async def _tagged(db: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await db.fetch(
        """
        SELECT r.namespace || '/' || r.name AS repo, t.tag
        FROM v2_tags t JOIN repositories r USING (repository_id)
        """
    )
    return [(r["repo"], r["tag"]) for r in rows]


@pytest.mark.parametrize(
    "seconds",
    [
        15,
        pytest.param(
            60,
            marks=[
                pytest.mark.slow,
                pytest.mark.timeout(300),
                pytest.mark.skipif(
                    not os.environ.get("GC_STORM_LONG"), reason="set GC_STORM_LONG=1 for 60 s"
                ),
            ],
        ),
    ],
)
async def test_storm_loses_nothing_live_and_leaves_no_garbage(
    launcher: Launcher,
    settings: Settings,
    svc: Services,
    db: asyncpg.Connection,
    seconds: int,
) -> None:
    env = {"REGISTRYD_GC_GRACE_SECONDS": GRACE, "REGISTRYD_GC_UNTAGGED_SECONDS": "2"}
    serving = launcher.start(
        settings.data_dir, settings.database_url, env={**env, "REGISTRYD_GC_INTERVAL_SECONDS": "0"}
    )
    collecting = launcher.start(  # the other replica, collecting every second
        settings.data_dir, settings.database_url, env={**env, "REGISTRYD_GC_INTERVAL_SECONDS": "1"}
    )
    failures = Failures()
    ops: Counter[str] = Counter()
    until = time.monotonic() + seconds
    await asyncio.gather(*(_client(serving.url, i, until, failures, ops) for i in range(4)))
    assert not failures, failures
    assert ops["push"] > 20, ops

    # Every tagged image pulls completely.
    async with aiohttp.ClientSession(base_url=serving.url) as http:
        v2 = V2Client(http)
        for repo, tag in await _tagged(db):
            status, _, _ = await v2.call("GET", f"/v2/{repo}/manifests/{tag}")
            assert status == 200
            await _pull_completely(v2, repo, tag, failures)
    assert not failures, failures
    # The other replica really collected while the storm went on.
    freed = [
        json.loads(line)["gc_blobs"]
        for line in collecting.log().splitlines()
        if line.startswith("{") and '"gc_blobs"' in line
    ]
    assert len(freed) >= seconds // 3, collecting.log()[-2000:]
    assert sum(freed) > 0

    # Once the grace period is over, one more collection leaves no garbage at all.
    await asyncio.sleep(float(GRACE) + 1)
    done = await asyncio.to_thread(
        run_cli,
        "gc",
        env={
            "REGISTRYD_DATABASE_URL": str(settings.database_url),
            "REGISTRYD_DATA_DIR": str(settings.data_dir),
            **env,
        },
    )
    assert done.returncode == 0, done.stderr
    unreferenced_blobs = await db.fetchval(
        """
        SELECT count(*) FROM blobs b
        WHERE NOT EXISTS (SELECT 1 FROM v2_repository_blobs l WHERE l.digest = b.digest)
          AND NOT EXISTS (SELECT 1 FROM v1_images i WHERE i.layer_digest = b.digest)
        """
    )
    unreferenced_links = await db.fetchval(
        """
        SELECT count(*) FROM v2_repository_blobs l
        WHERE NOT EXISTS (
            SELECT 1 FROM v2_manifest_references r
            WHERE r.repository_id = l.repository_id AND r.digest = l.digest
        )
        """
    )
    untagged = await db.fetchval(
        """
        SELECT count(*) FROM v2_manifests m WHERE NOT EXISTS (
            SELECT 1 FROM v2_tags t
            WHERE t.repository_id = m.repository_id AND t.manifest_digest = m.digest
        )
        """
    )
    assert (unreferenced_blobs, unreferenced_links, untagged) == (0, 0, 0)
    assert (await scrub(svc)).clean
