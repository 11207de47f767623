"""Attack (or bad luck): ``kill -9`` registryd once, then run it normally.

Before, the killed process stayed in the embedded PostgreSQL's list of users,
so every later clean stop logged "stopped" while the postmaster kept running
(and kept its memory, and its data directory's lock). Now the next start
adopts the orphaned postmaster and a clean stop really stops it.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import psutil

from registryd.db.embedded import postmaster_pid
from tests.process.conftest import Launcher, launcher  # noqa: F401 - the fixture


def _running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


async def _gone(pid: int, within: float = 30) -> bool:
    for _ in range(int(within * 10)):
        if not _running(pid):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_postgresql_orphaned_by_kill_9_is_adopted_and_stopped(
    launcher: Launcher,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    pgdata = data_dir / "postgres"
    first = launcher.start(data_dir, None)
    orphan = await asyncio.to_thread(postmaster_pid, pgdata)
    assert orphan is not None
    try:
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(30)
        assert _running(orphan)  # kill -9 leaves the postmaster behind, as it must

        for _ in range(2):  # and not only the first clean run after the kill
            server = launcher.start(data_dir, None)
            assert await asyncio.to_thread(postmaster_pid, pgdata) == orphan  # adopted
            assert await asyncio.to_thread(server.stop) == 0
            assert "embedded PostgreSQL stopped" in server.log()
            assert await _gone(orphan), "the postmaster outlived a clean stop"
            orphan = await asyncio.to_thread(_start_and_orphan, launcher, data_dir)
    finally:
        if _running(orphan):
            psutil.Process(orphan).kill()


def _start_and_orphan(launch: Launcher, data_dir: Path) -> int:
    """Start registryd, kill -9 it, and return the postmaster it leaves behind."""
    server = launch.start(data_dir, None)
    pid = postmaster_pid(data_dir / "postgres")
    assert pid is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(30)
    return pid
