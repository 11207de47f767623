"""Attack (or bad luck): kill one worker of ``registryd serve --workers 2``.

Before, the death of one worker stopped them all, so one crash (the OOM killer,
a segfault in a C extension) was an outage. Now the parent starts a new worker
in its place, logs it, and the server keeps serving; only deaths beyond the
restart budget stop the set (tests/process/test_workers.py).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import psutil

from tests.process.conftest import Launcher, launcher  # noqa: F401 - the fixture
from tests.support.images import make_image, random_bytes
from tests.support.v1client import V1Client


def _worker_pids(pid: int) -> set[int]:
    return {child.pid for child in psutil.Process(pid).children()}


async def _new_worker(parent: int, old: set[int], within: float = 30) -> set[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        pids = await asyncio.to_thread(_worker_pids, parent)
        if len(pids) == len(old) and pids != old:
            return pids
        await asyncio.sleep(0.1)
    raise AssertionError("no worker replaced the dead one")


async def test_a_killed_worker_is_replaced_and_the_server_keeps_serving(
    launcher: Launcher,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    database_url: str,
) -> None:
    server = launcher.start(tmp_path / "data", database_url, "--workers", "2")
    before = await asyncio.to_thread(_worker_pids, server.pid)
    assert len(before) == 2
    victim = min(before)
    psutil.Process(victim).send_signal(signal.SIGKILL)
    after = await _new_worker(server.pid, before)
    assert victim not in after
    assert server.proc.poll() is None  # the parent lives on
    assert f"worker {victim} exited with -9; started worker" in server.log()

    # Every connection lands on a live worker: the new one serves too.
    image = make_image("after-worker-death", random_bytes(100_000, 3))
    sessions = [aiohttp.ClientSession(base_url=server.url) for _ in range(8)]
    try:
        assert await V1Client(sessions[0]).push_image(image) == "pushed"
        for session in sessions:
            async with session.get(f"/v1/images/{image.image_id}/layer") as resp:
                assert resp.status == 200
                assert await resp.read() == image.layer
    finally:
        for session in sessions:
            await session.close()
    assert await asyncio.to_thread(server.stop) == 0


async def test_workers_do_not_outlive_a_killed_parent(
    launcher: Launcher,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    database_url: str,
) -> None:
    """kill -9 of the parent: its workers drain and exit instead of serving on as orphans
    beside the set a supervisor starts next."""
    server = launcher.start(tmp_path / "data", database_url, "--workers", "2")
    workers = [psutil.Process(pid) for pid in await asyncio.to_thread(_worker_pids, server.pid)]
    assert len(workers) == 2
    server.proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(server.proc.wait, 10)
    gone, alive = await asyncio.to_thread(psutil.wait_procs, workers, 30)
    assert not alive, f"orphaned workers still running: {[p.pid for p in alive]}"
    assert len(gone) == 2
