"""One-connection HEAD round trips: registryd next to a bare aiohttp handler and nginx.

Each server pinned to CPU 0 and this client to CPU 1, as in the pinned bench.
One keep-alive connection sends HEADs one after another, so a round trip is
the per-request cost with nothing overlapping it. The rows split registryd's
share: ``/v1/_ping`` is its middlewares, metrics and logging around a handler
that does nothing; the blob HEAD without auth adds the lookup; the Bearer rows
add the token check. The server's CPU per request (its whole process tree,
PostgreSQL included) does not depend on this client, whose own part of a
round trip is the same in every row (nginx's row is close to that floor).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import v2, workloads
from bench.__main__ import running
from bench.loadgen import Connection
from bench.targets import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    Server,
    find_binary,
    start_bare_aiohttp,
    start_nginx,
    start_registryd,
)

BARE = "aiohttp handler on uvloop (bench.bare)"


@dataclass(frozen=True)
class Probe:
    name: str
    server: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Measured:
    round_trips: list[float] = field(default_factory=list)  # seconds, every round
    server_cpu: list[float] = field(default_factory=list)  # CPU seconds per request, per round


async def round_trips(server: Server, probe: Probe, requests: int) -> tuple[list[float], float]:
    """``requests`` HEADs on one connection after a warm-up; their times and the server's
    CPU seconds per request."""
    conn = Connection("127.0.0.1", server.port)
    try:
        for _ in range(max(10, requests // 10)):
            await _head(conn, probe)
        times = []
        cpu0 = server.cpu_seconds()
        for _ in range(requests):
            t0 = time.perf_counter()
            await _head(conn, probe)
            times.append(time.perf_counter() - t0)
        return times, (server.cpu_seconds() - cpu0) / requests
    finally:
        conn.close()


async def _head(conn: Connection, probe: Probe) -> None:
    resp = await conn.request("HEAD", probe.path, headers=probe.headers)
    if resp.status != 200:
        raise RuntimeError(f"{probe.name}: HEAD {probe.path}: HTTP {resp.status}")


async def seeded(none: Server, token: Server, blob: workloads.Blob) -> dict[str, str]:
    """The blob and an image over it in both registryds; the token one's pull header."""
    img = v2.image([blob])
    conn = Connection("127.0.0.1", none.port)
    try:
        await v2.seed(conn, [blob], img, "latest", {})
    finally:
        conn.close()
    conn = Connection("127.0.0.1", token.port)
    try:
        credentials = v2.basic(ADMIN_USER, ADMIN_PASSWORD)
        await v2.seed(conn, [blob], img, "latest", await v2.bearer(conn, "pull,push", credentials))
        return await v2.bearer(conn, "pull", credentials)
    finally:
        conn.close()


async def head_table(requests: int, rounds: int, workdir: Path) -> str:
    os.sched_setaffinity(0, {1})
    blob = workloads.make_blob("head-1k", 1024)
    files = workdir / "files"
    workloads.seed_files(files, [blob])
    starters: dict[str, Callable[[], Server]] = {
        "registryd none": lambda: start_registryd(workdir / "none", "0", 1),
        "registryd token": lambda: start_registryd(workdir / "token", "0", 1, auth_mode="token"),
        "aiohttp": lambda: start_bare_aiohttp(workdir / "aiohttp", "0"),
    }
    if find_binary("nginx") is not None:
        starters["nginx"] = lambda: start_nginx(workdir / "nginx", files, "0", 1)
    with running(starters) as servers:
        bearer = await seeded(servers["registryd none"], servers["registryd token"], blob)
        blob_path = v2.blob_path(blob.digest_hex)
        manifest = {**bearer, "Accept": v2.ACCEPT}
        probes = [
            Probe("nginx, static file", "nginx", blob.path("nginx")),
            Probe(BARE, "aiohttp", "/blob"),
            Probe("registryd /v1/_ping (middlewares only)", "registryd none", "/v1/_ping"),
            Probe("registryd blob HEAD, auth none", "registryd none", blob_path),
            Probe("registryd blob HEAD, Bearer", "registryd token", blob_path, bearer),
            Probe(
                "registryd manifest HEAD, Bearer",
                "registryd token",
                v2.manifest_path("latest"),
                manifest,
            ),
        ]
        probes = [p for p in probes if p.server in servers]
        measured = {p.name: Measured() for p in probes}
        for _ in range(rounds):  # interleaved, so a noisy moment touches every row
            for probe in probes:
                times, cpu = await round_trips(servers[probe.server], probe, requests)
                measured[probe.name].round_trips += times
                measured[probe.name].server_cpu.append(cpu)
                await asyncio.sleep(0.1)
    return render(probes, measured, requests, rounds)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def render(probes: list[Probe], measured: dict[str, Measured], requests: int, rounds: int) -> str:
    floor = statistics.median(measured[BARE].round_trips) if BARE in measured else None
    lines = [
        f"HEAD round trips on one connection: {requests} requests x {rounds} rounds per row, "
        "servers on CPU 0, client on CPU 1",
        "",
        "| request | p50 us | p99 us | server CPU us per request | p50 / bare aiohttp |",
        "|---|---:|---:|---:|---:|",
    ]
    for probe in probes:
        m = measured[probe.name]
        p50 = statistics.median(m.round_trips)
        ratio = "-" if floor is None else f"{p50 / floor:.2f}x"
        lines.append(
            f"| {probe.name} | {p50 * 1e6:.0f} | {_pct(m.round_trips, 0.99) * 1e6:.0f} "
            f"| {statistics.median(m.server_cpu) * 1e6:.0f} | {ratio} |"
        )
    return "\n".join(lines)
