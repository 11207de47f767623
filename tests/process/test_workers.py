"""``registryd serve --workers N``: one port, several processes, one PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import psutil

from tests.process.conftest import Launcher
from tests.support.images import make_image, random_bytes
from tests.support.v1client import V1Client

LAYER = random_bytes(8 * 1024 * 1024, seed=12)


def _workers(pid: int) -> list[psutil.Process]:
    children: list[psutil.Process] = psutil.Process(pid).children()
    return children


def _serving_pids(pids: list[int], port: int) -> set[int]:
    """The processes holding an established connection on ``port``."""
    serving = set()
    for pid in pids:
        for conn in psutil.Process(pid).net_connections("tcp"):
            if conn.status == psutil.CONN_ESTABLISHED and conn.laddr.port == port:
                serving.add(pid)
    return serving


async def test_workers_share_the_port_and_stop_together(launcher: Launcher, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = launcher.start(data_dir, None, "--workers", "2")  # embedded PostgreSQL
    workers = await asyncio.to_thread(_workers, server.pid)
    assert len(workers) == 2
    image = make_image("workers", LAYER)
    port = int(server.url.rsplit(":", 1)[1])
    # One connection per session: the kernel spreads connections over the workers.
    sessions = [aiohttp.ClientSession(base_url=server.url) for _ in range(16)]
    try:
        assert await V1Client(sessions[0]).push_image(image) == "pushed"
        responses = [await s.get(f"/v1/images/{image.image_id}/layer") for s in sessions]
        serving = await asyncio.to_thread(_serving_pids, [w.pid for w in workers], port)
        assert serving == {w.pid for w in workers}
        for resp in responses:  # every worker serves the image pushed through one of them
            assert await resp.read() == LAYER
    finally:
        for s in sessions:
            await s.close()
    assert await asyncio.to_thread(server.stop) == 0
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    assert "embedded PostgreSQL stopped" in server.log()
    assert server.log().count("applied migration 0001") == 1  # once, by the parent


async def test_a_dead_worker_stops_the_set_when_out_of_restarts(
    launcher: Launcher, tmp_path: Path, database_url: str
) -> None:
    server = launcher.start(
        tmp_path / "data",
        database_url,
        "--workers",
        "3",
        env={"REGISTRYD_MAX_RESTARTS_PER_MINUTE": "0"},
    )
    workers = await asyncio.to_thread(_workers, server.pid)
    assert len(workers) == 3
    workers[0].send_signal(signal.SIGKILL)
    assert await asyncio.to_thread(server.proc.wait, 60) == 1
    assert "stopping the others" in server.log()
    for worker in workers[1:]:
        assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE


async def test_every_worker_writes_its_log_lines(
    launcher: Launcher, tmp_path: Path, database_url: str
) -> None:
    """A forked worker has no thread draining its log queue unless it starts its own."""
    server = launcher.start(tmp_path / "data", database_url, "--workers", "2")
    workers = await asyncio.to_thread(_workers, server.pid)
    sessions = [aiohttp.ClientSession(base_url=server.url) for _ in range(16)]
    try:
        for n, session in enumerate(sessions):
            async with session.get("/v1/_ping", headers={"X-Request-Id": f"ping-{n}"}) as resp:
                assert resp.status == 200
    finally:
        for s in sessions:
            await s.close()
    assert await asyncio.to_thread(server.stop) == 0
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "registryd.access"]
    pings = {
        str(line["request_id"]) for line in access if str(line["request_id"]).startswith("ping-")
    }
    assert pings == {f"ping-{n}" for n in range(16)}  # both workers' lines, none lost
    assert len(workers) == 2
