"""Attack (or bad luck): PostgreSQL dies or hangs under a running ``registryd serve``.

Against the real process and its embedded PostgreSQL: the postmaster is hung
with SIGSTOP (and its backends with it) or killed with SIGKILL. Requests must
get a quick 503 with ``Retry-After`` in their protocol's error format, never a
500 or a minute-long hang; ``/readyz`` must keep its own timeout; the embedded
server must be restarted, and everything must work again without restarting
registryd. When it cannot be restarted, ``/livez`` fails and the process exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from registryd.db.embedded import postmaster_pid
from tests.process.conftest import Launcher, ServerProcess, launcher  # noqa: F401 - fixture
from tests.support.images import make_image, random_bytes
from tests.support.v1client import V1Client

FAST = {
    "REGISTRYD_DB_ACQUIRE_TIMEOUT_SECONDS": "1",
    "REGISTRYD_DB_STATEMENT_TIMEOUT_SECONDS": "1",
    "REGISTRYD_READINESS_TIMEOUT_SECONDS": "1",
    "REGISTRYD_LOG_FORMAT": "text",
}
V1_DATA = "/v1/repositories/alice/app/tags"
V2_DATA = "/v2/alice/app/tags/list"


def _postgres_processes(pgdata: Path) -> list[psutil.Process]:
    pid = postmaster_pid(pgdata)
    assert pid is not None
    postmaster = psutil.Process(pid)
    children: list[psutil.Process] = postmaster.children(recursive=True)
    return [postmaster, *children]


def _running(pid: int) -> bool:
    """Alive, and not a zombie (an unreaped postmaster's parent may be a non-reaping init)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def continued() -> Iterator[list[psutil.Process]]:
    """Processes a test stopped: continued whatever happens, so nothing stays frozen."""
    stopped: list[psutil.Process] = []
    yield stopped
    for process in stopped:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGCONT)


async def _call(url: str) -> tuple[int, dict[str, str], Any, float]:
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
        body = await resp.json(content_type=None)
        return resp.status, dict(resp.headers), body, time.monotonic() - started


async def _serve_with_data(launch: Launcher, data_dir: Path, **env: str) -> ServerProcess:
    server = launch.start(data_dir, None, env={**FAST, **env})
    async with aiohttp.ClientSession(base_url=server.url) as http:
        image = make_image("outage", random_bytes(10_000, 1))
        await V1Client(http).push("alice/app", "latest", [image])
    return server


def _assert_unavailable(status: int, headers: dict[str, str], body: Any, v2: bool) -> None:
    assert status == 503, body
    assert int(headers["Retry-After"]) > 0
    if v2:
        assert body["errors"][0]["code"] == "UNAVAILABLE"
    else:
        assert "retry" in body["error"].lower()


async def test_hung_postgresql_answers_503_quickly_and_recovers(
    launcher: Launcher,  # noqa: F811
    tmp_path: Path,
    continued: list[psutil.Process],
) -> None:
    data_dir = tmp_path / "data"
    server = await _serve_with_data(launcher, data_dir)
    assert (await _call(server.url + V1_DATA))[0] == 200

    processes = await asyncio.to_thread(_postgres_processes, data_dir / "postgres")
    for process in processes:
        process.send_signal(signal.SIGSTOP)
        continued.append(process)

    status, _, body, seconds = await _call(server.url + "/readyz")
    assert status == 503
    assert body["checks"]["database"] != "ok"
    assert seconds < 2.5  # its 1 s timeout, not asyncpg's 60 s
    for path, v2 in ((V1_DATA, False), (V2_DATA, True)):
        status, headers, body, seconds = await _call(server.url + path)
        _assert_unavailable(status, headers, body, v2)
        assert seconds < 10  # acquire + statement + release bounds, not minutes
    status, _, _, seconds = await _call(server.url + "/readyz")  # again, while still hung
    assert status == 503
    assert seconds < 2.5
    assert (await _call(server.url + "/livez"))[0] == 200  # hung is not dead

    for process in processes:
        process.send_signal(signal.SIGCONT)
    await _until_ok(server.url + V1_DATA)
    await _until_ok(server.url + V2_DATA)
    await _until_ok(server.url + "/readyz")
    assert await asyncio.to_thread(server.stop) == 0
    log = server.log()
    assert log.count("PostgreSQL unavailable") == 1
    assert "PostgreSQL is back" in log
    assert "Traceback" not in log


async def _until_ok(url: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await _call(url)
        if last[0] == 200:
            return
        assert last[0] == 503, last  # never a 500 on the way
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} not back in {within}s: {last}")


async def test_killed_postgresql_is_restarted_and_serving_resumes(
    launcher: Launcher,  # noqa: F811
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    server = await _serve_with_data(launcher, data_dir)
    old = await asyncio.to_thread(postmaster_pid, data_dir / "postgres")
    assert old is not None
    psutil.Process(old).send_signal(signal.SIGKILL)
    statuses = []
    for path, v2 in ((V1_DATA, False), (V2_DATA, True)):
        status, headers, body, _ = await _call(server.url + path)
        statuses.append(status)
        if status != 200:  # unless the supervisor was already quicker
            _assert_unavailable(status, headers, body, v2)
    await _until_ok(server.url + V1_DATA)
    await _until_ok(server.url + V2_DATA)
    new = await asyncio.to_thread(postmaster_pid, data_dir / "postgres")
    assert new is not None
    assert new != old
    assert (await _call(server.url + "/livez"))[0] == 200
    assert await asyncio.to_thread(server.stop) == 0
    log = server.log()
    assert "embedded PostgreSQL restarted" in log
    assert log.count("PostgreSQL unavailable") == 1  # one line per outage, not per retry
    assert "PostgreSQL is back" in log
    assert 500 not in statuses
    assert "Traceback" not in log
    assert not _running(new)  # and stopped with the server


async def test_postgresql_that_cannot_be_restarted_fails_liveness_and_exits_1(
    launcher: Launcher,  # noqa: F811
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    server = await _serve_with_data(
        launcher,
        data_dir,
        REGISTRYD_MAX_RESTARTS_PER_MINUTE="0",
        REGISTRYD_DRAIN_DELAY_SECONDS="3",
    )
    pid = await asyncio.to_thread(postmaster_pid, data_dir / "postgres")
    assert pid is not None
    psutil.Process(pid).send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    livez: tuple[int, Any] = (200, None)
    while time.monotonic() < deadline and livez[0] == 200:
        status, _, body, _ = await _call(server.url + "/livez")
        livez = (status, body)
        await asyncio.sleep(0.1)
    assert livez == (503, {"status": "failed"})
    assert await asyncio.to_thread(server.proc.wait, 60) == 1
    assert "embedded PostgreSQL died again; 0 restart(s) a minute is the limit" in server.log()
