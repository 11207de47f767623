"""Server CPU of 1 MiB v2 blob GETs with a Bearer token, registryd next to nginx, via wrk.

The headline pull point of the bench in a minute: every server pinned to CPU 0, wrk
to CPU 1, ``concurrency`` connections, rounds interleaved across the servers. A third
row is the floor of aiohttp: a bare handler sending the same files by the same sendfile
path (``bench.bare``), without auth, lookups, metrics or middlewares. The
figure is the server's CPU (its whole process tree, PostgreSQL included) per GB moved
and per request: it does not depend on the generator, so it compares two servers on
a machine that is busy with other things better than throughput does.
"""

from __future__ import annotations

import asyncio
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import v2, wrk
from bench.__main__ import running
from bench.loadgen import Connection
from bench.targets import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    Server,
    start_bare_aiohttp,
    start_nginx,
    start_registryd,
)
from bench.workloads import Blob, MiB, make_blob, seed_files

# The floor of this GET in aiohttp: the same sendfile path, no auth, lookups or middlewares.
BARE = "aiohttp handler + registryd's sendfile (bench.bare)"


@dataclass
class CpuPerRequest:
    """Per round: server CPU seconds, requests and body bytes."""

    cpu_seconds: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    body_bytes: list[int] = field(default_factory=list)

    def per_gb(self) -> list[float]:
        return [c / (b / 1e9) for c, b in zip(self.cpu_seconds, self.body_bytes, strict=True) if b]

    def per_request_us(self) -> list[float]:
        return [1e6 * c / r for c, r in zip(self.cpu_seconds, self.requests, strict=True) if r]


async def _seed_registryd(server: Server, blobs: list[Blob]) -> dict[str, str]:
    conn = Connection("127.0.0.1", server.port)
    try:
        credentials = v2.basic(ADMIN_USER, ADMIN_PASSWORD)
        img = v2.image(blobs)
        await v2.seed(conn, blobs, img, "latest", await v2.bearer(conn, "pull,push", credentials))
        return await v2.bearer(conn, "pull", credentials)
    finally:
        conn.close()


async def get_cost_table(
    workdir: Path, concurrency: int, seconds: float, rounds: int, blob_count: int = 20
) -> str:
    os.sched_setaffinity(0, {1})
    blobs = [make_blob(f"getcost-{i}", MiB) for i in range(blob_count)]
    files = workdir / "files"
    seed_files(files, blobs)
    starters: dict[str, Callable[[], Server]] = {
        "registryd": lambda: start_registryd(workdir / "registryd", "0", 1, auth_mode="token"),
        "nginx": lambda: start_nginx(workdir / "nginx", files, "0", 1),
        BARE: lambda: start_bare_aiohttp(workdir / "aiohttp", "0", files),
    }
    with running(starters) as servers:
        bearer = await _seed_registryd(servers["registryd"], blobs)
        loads = {
            "registryd": wrk.WrkLoad(
                [v2.blob_path(b.digest_hex) for b in blobs], [b.size for b in blobs], bearer
            ),
            "nginx": wrk.WrkLoad([b.path("nginx") for b in blobs], [b.size for b in blobs]),
            BARE: wrk.WrkLoad([b.path("nginx") for b in blobs], [b.size for b in blobs]),
        }
        measured = {name: CpuPerRequest() for name in servers}
        for _ in range(rounds):
            for name, server in servers.items():
                cpu0 = server.cpu_seconds()
                run = await wrk.run(
                    "127.0.0.1", server.port, loads[name], concurrency, seconds, workdir, "1"
                )
                m = measured[name]
                m.cpu_seconds.append(server.cpu_seconds() - cpu0)
                m.requests.append(run.result.requests)
                m.body_bytes.append(run.result.body_bytes)
                if run.result.errors:
                    raise RuntimeError(f"{name}: {run.result.error_kinds}")
                await asyncio.sleep(0.2)
    nginx_gb = statistics.median(measured["nginx"].per_gb())
    lines = [
        f"1 MiB v2 blob GETs (registryd: Bearer), wrk c={concurrency}, {rounds} x {seconds:g} s "
        "interleaved, servers on CPU 0, wrk on CPU 1",
        "",
        "| server | CPU s per GB (median, range) | CPU us per request | / nginx |",
        "|---|---:|---:|---:|",
    ]
    for name, m in measured.items():
        per_gb = m.per_gb()
        lines.append(
            f"| {name} | {statistics.median(per_gb):.3f} ({min(per_gb):.3f}-{max(per_gb):.3f}) "
            f"| {statistics.median(m.per_request_us()):.0f} "
            f"| {statistics.median(per_gb) / nginx_gb:.2f}x |"
        )
    return "\n".join(lines)
