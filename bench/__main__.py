"""``python -m bench``: registryd next to distribution and nginx, interleaved, ratios per point.

One command sets everything up (references via apt-get when missing, each
server in its own temp dir on 127.0.0.1), seeds the same blobs into every
target, runs every point ``--repeat`` times interleaved across targets and
prints (and with ``--out`` writes) a Markdown report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import os
import platform
import resource
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import uvloop

from bench import report, workloads
from bench.loadgen import Connection, Operation, RunResult, run_load
from bench.report import Point, Sample
from bench.targets import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    Server,
    ensure_references,
    find_binary,
    start_distribution,
    start_nginx,
    start_registryd,
)
from bench.workloads import MiB, StreamedLayer, UniqueLayers

# The targets that accept pushes and serve metadata (nginx only serves files).
WRITERS = ("registryd", "distribution")


@dataclass(frozen=True)
class Plan:
    pull_small_count: int
    pull_small_bytes: int
    pull_sizes: tuple[int, ...]
    pull_concurrency: tuple[int, ...]
    push_bytes: int
    push_concurrency: tuple[int, ...]
    metadata_concurrency: int
    memory_layer_bytes: int
    memory_concurrency: int
    seconds: float
    max_operations: int
    repeat: int


FULL = Plan(
    200,
    MiB,
    (16 * MiB, 128 * MiB),
    (1, 16, 64, 256),
    16 * MiB,
    (1, 8, 32),
    64,
    1024 * MiB,
    16,
    3.0,
    20000,
    3,
)
SMOKE = Plan(8, 64 * 1024, (256 * 1024,), (1, 4), 256 * 1024, (1, 2), 4, 4 * MiB, 2, 0.3, 200, 1)


class Bench:
    def __init__(self, plan: Plan, workdir: Path, targets: list[str]) -> None:
        self.plan, self.workdir, self.targets = plan, workdir, targets
        self.points: list[Point] = []
        self.nonce = secrets.token_hex(4)
        self.small = [
            workloads.make_blob(f"pull-small-{i}", plan.pull_small_bytes)
            for i in range(plan.pull_small_count)
        ]
        self.large = [workloads.make_blob(f"pull-{size}", size) for size in plan.pull_sizes]
        self.files = workdir / "files"

    # Servers --------------------------------------------------------------------

    def start(self, name: str, cpus: str | None, workers: int) -> Server:
        sub = self.workdir / f"{name}-{cpus or 'all'}-{workers}"
        if name == "registryd":
            return start_registryd(sub, cpus, workers)
        if name == "distribution":
            return start_distribution(sub, cpus)
        return start_nginx(sub, self.files, cpus, workers)

    async def seed(self, servers: dict[str, Server]) -> None:
        blobs = self.small + self.large
        for server in servers.values():
            conn = Connection("127.0.0.1", server.port)
            try:
                if server.name == "registryd":
                    await workloads.seed_registryd(conn, blobs)
                elif server.name == "distribution":
                    await workloads.seed_distribution(conn, blobs)
            finally:
                conn.close()

    # Runs -------------------------------------------------------------------------

    async def measure(
        self,
        server: Server,
        operations: Iterator[Operation],
        concurrency: int,
        max_seconds: float | None = None,
        max_operations: int | None = None,
    ) -> Sample:
        server.reset_peak_rss()
        cpu0, usage0 = server.cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF)
        result: RunResult = await run_load(
            "127.0.0.1",
            server.port,
            operations,
            concurrency,
            max_seconds or self.plan.seconds,
            max_operations or self.plan.max_operations,
        )
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        client_cpu = usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime
        return Sample(
            result=result,
            server_cpu=(server.cpu_seconds() - cpu0) / result.seconds,
            client_cpu=client_cpu / result.seconds,
            peak_rss_bytes=server.peak_rss_bytes(),
        )

    async def interleaved(
        self,
        servers: dict[str, Server],
        section: str,
        label: str,
        make: Callable[[str], Iterator[Operation]],
        concurrency: int,
        unit: str = "MB/s",
        only: tuple[str, ...] = (),
        prepare: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """Measure one point ``repeat`` times per target; ``prepare(target)`` runs before
        each measurement, off the clock."""
        point = Point(section, label, concurrency, unit)
        for _ in range(self.plan.repeat):
            for name, server in servers.items():
                if only and name not in only:
                    continue
                if prepare is not None:
                    await prepare(name)
                sample = await self.measure(server, make(name), concurrency)
                point.samples.setdefault(name, []).append(sample)
                await asyncio.sleep(0.2)
        self.points.append(point)
        print(report.progress(point), file=sys.stderr, flush=True)

    async def pinned(self) -> None:
        os.sched_setaffinity(0, {1})  # the load generator: CPU 1; servers: CPU 0
        starters = {n: functools.partial(self.start, n, "0", 1) for n in self.targets}
        with running(starters) as servers:
            await self.seed(servers)
            for conc in self.plan.pull_concurrency:
                await self.interleaved(
                    servers,
                    "pull",
                    f"{len(self.small)} x {report.size(self.plan.pull_small_bytes)}",
                    functools.partial(workloads.pulls, blobs=self.small),
                    conc,
                )
            for blob in self.large:
                for conc in self.plan.pull_concurrency:
                    await self.interleaved(
                        servers,
                        "pull",
                        report.size(blob.size),
                        functools.partial(workloads.pulls, blobs=[blob]),
                        conc,
                    )
            layers = UniqueLayers(self.plan.push_bytes, self.nonce)
            for conc in self.plan.push_concurrency:
                await self.pushes(servers, "push", report.size(self.plan.push_bytes), layers, conc)
            for kind in ("json", "ancestry", "tags"):
                await self.interleaved(
                    servers,
                    "metadata",
                    f"{kind} (distribution: manifest)",
                    functools.partial(workloads.metadata_reads, blob=self.small[0], kind=kind),
                    self.plan.metadata_concurrency,
                    unit="req/s",
                    only=WRITERS,
                )
            await self.memory(servers)

    async def pushes(
        self,
        servers: dict[str, Server],
        section: str,
        label: str,
        layers: UniqueLayers,
        concurrency: int,
    ) -> None:
        """One push point; servers named other than "distribution" speak v1 (registryd)."""
        # Enough pre-hashed v1 pushes for 600 MB/s over the whole run (3x what we reach).
        per_run = int(self.plan.seconds * 600e6 / layers.size) + concurrency
        needed = min(per_run, self.plan.max_operations)

        async def prepare(name: str) -> None:
            if name != "distribution":
                await layers.prepare(needed)

        def make(name: str) -> Iterator[Operation]:
            return workloads.pushes(
                "distribution" if name == "distribution" else "registryd", layers
            )

        before = layers.hashed_in_run
        await self.interleaved(
            servers,
            section,
            label,
            make,
            concurrency,
            only=tuple(name for name in servers if name != "nginx"),
            prepare=prepare,
        )
        if layers.hashed_in_run > before:
            print(
                f"note: {layers.hashed_in_run - before} registryd pushes of {section} {label} "
                f"c={concurrency} were hashed by the load generator inside the run",
                file=sys.stderr,
            )

    async def memory(self, servers: dict[str, Server]) -> None:
        size, conc = self.plan.memory_layer_bytes, self.plan.memory_concurrency
        big = StreamedLayer(size, 0, "nginx")
        path = self.files / "blobs" / "big"
        if "nginx" in servers and not path.exists():
            with path.open("wb") as out:
                for_chunks = big.body()
                with contextlib.suppress(StopAsyncIteration):
                    while True:
                        out.write(await anext(for_chunks))
        push_point = Point("memory", f"push {report.size(size)}", conc, "MB/s")
        pull_point = Point("memory", f"pull {report.size(size)}", conc, "MB/s")
        for name, server in servers.items():
            pushed: list[str] = []
            if name != "nginx":
                sample = await self.measure(
                    server,
                    workloads.big_pushes(name, size, self.nonce, pushed),
                    conc,
                    max_seconds=600,
                    max_operations=conc,
                )
                push_point.samples[name] = [sample]
                if not pushed:
                    # Every push failed: the push row reports why; nothing to pull.
                    print(report.progress(push_point), file=sys.stderr, flush=True)
                    continue
            else:
                pushed = ["/blobs/big"]
            sample = await self.measure(
                server, workloads.paths_pulls(pushed), conc, max_seconds=600, max_operations=conc
            )
            pull_point.samples[name] = [sample]
            if name != "nginx":
                await remove_layers(server.workdir, size)
        for point in (push_point, pull_point):
            self.points.append(point)
            print(report.progress(point), file=sys.stderr, flush=True)

    async def scaling(self) -> None:
        """registryd alone: 1 worker on one CPU next to 2 workers on two, on the loads
        that are bound by the server's CPU (pushes hash every byte twice; metadata).

        The load generator is left free, as the second CPU is given to the server.
        """
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        one, two = SCALING
        with running(
            {
                one: lambda: start_registryd(self.workdir / "scaling-1", "0", 1),
                two: lambda: start_registryd(self.workdir / "scaling-2", "0,1", 2),
            }
        ) as servers:
            await self.seed(servers)
            layers = UniqueLayers(self.plan.push_bytes, self.nonce + "s")
            await self.pushes(
                servers,
                report.SCALING,
                f"push {report.size(self.plan.push_bytes)}",
                layers,
                self.plan.push_concurrency[1],
            )
            await self.interleaved(
                servers,
                report.SCALING,
                "metadata json",
                lambda _: workloads.metadata_reads("registryd", blob=self.small[0], kind="json"),
                self.plan.metadata_concurrency,
                unit="req/s",
            )

    async def auth(self) -> None:
        """registryd with auth off (as in every other section) next to token auth, where
        each image request also asks PostgreSQL which repositories hold the image."""
        os.sched_setaffinity(0, {1})
        off, token = AUTH_MODES
        with running(
            {
                off: lambda: start_registryd(self.workdir / "auth-none", "0", 1),
                token: lambda: start_registryd(
                    self.workdir / "auth-token", "0", 1, auth_mode="token"
                ),
            }
        ) as servers:
            await self.seed({off: servers[off]})
            conn = Connection("127.0.0.1", servers[token].port)
            try:
                headers = await workloads.seed_registryd_with_token(
                    conn, self.small, ADMIN_USER, ADMIN_PASSWORD
                )
            finally:
                conn.close()
            await self.interleaved(
                servers,
                report.AUTH,
                f"pull {len(self.small)} x {report.size(self.plan.pull_small_bytes)}",
                lambda name: workloads.pulls(
                    "registryd", self.small, headers if name == token else None
                ),
                self.plan.pull_concurrency[-2],
            )

    async def unpinned(self, workers: int) -> None:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        with running(
            {n: functools.partial(self.start, n, None, workers) for n in self.targets}
        ) as servers:
            await self.seed(servers)
            section = f"unpinned, {workers} workers"
            await self.interleaved(
                servers,
                section,
                f"pull {len(self.small)} x {report.size(self.plan.pull_small_bytes)}",
                functools.partial(workloads.pulls, blobs=self.small),
                self.plan.pull_concurrency[-2],
            )
            blob = self.large[-1]
            await self.interleaved(
                servers,
                section,
                f"pull {report.size(blob.size)}",
                functools.partial(workloads.pulls, blobs=[blob]),
                self.plan.pull_concurrency[1],
            )
            layers = UniqueLayers(self.plan.push_bytes, self.nonce)
            await self.pushes(
                servers,
                section,
                f"push {report.size(self.plan.push_bytes)}",
                layers,
                self.plan.push_concurrency[1],
            )


@contextlib.contextmanager
def running(starters: Mapping[str, Callable[[], Server]]) -> Iterator[dict[str, Server]]:
    """Start each server in turn; stop every one that started, also when a later one fails."""
    servers: dict[str, Server] = {}
    try:
        for name, start in starters.items():
            servers[name] = start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


SCALING = ("registryd, 1 worker on CPU 0", "registryd, 2 workers on CPUs 0-1")
AUTH_MODES = ("registryd, auth none", "registryd, auth token (Authorization: Token)")


def _unlink_files_of_size(root: Path, size: int) -> int:
    removed = 0
    for path in root.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and path.stat().st_size == size:
                path.unlink()
                removed += size
    return removed


async def remove_layers(root: Path, size: int) -> None:
    """Delete the memory phase's layers (every file of exactly ``size`` bytes) from a
    server's data: 16 x 1 GiB per target would not fit next to the next target's.

    The memory phase is the last use of a pinned server, so nothing reads them again.
    Waits (up to 30 s) until the space is free: a server may still hold a removed
    file open for a moment (registryd closes shared descriptors of removed files
    every 2 s).
    """
    free_before = shutil.disk_usage(root).free
    removed = await asyncio.to_thread(_unlink_files_of_size, root, size)
    deadline = time.monotonic() + 30
    while shutil.disk_usage(root).free < free_before + 0.9 * removed:
        if time.monotonic() > deadline:
            print(f"warning: {root.name}: removed layers still hold disk space", file=sys.stderr)
            return
        await asyncio.sleep(0.5)


def wrk_check(server_url: str, path: str, seconds: int) -> str:
    exe = find_binary("wrk")
    if exe is None:
        return "wrk not installed"
    out = subprocess.run(
        ["taskset", "-c", "1", exe, "-t1", "-c64", f"-d{seconds}s", server_url + path],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 30,
    ).stdout
    lines = [
        line.strip()
        for line in out.splitlines()
        if "Requests/sec" in line or "Transfer/sec" in line
    ]
    return ", ".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    versions = []
    for exe, flag in (("docker-registry", "--version"), ("nginx", "-v")):
        path = find_binary(exe)
        if path:
            proc = subprocess.run([path, flag], capture_output=True, text=True, check=False)
            versions.append((proc.stdout + proc.stderr).strip())
    return (
        f"{os.cpu_count()} x {cpu}, {mem:.0f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}, uvloop {version('uvloop')}, "
        f"aiohttp {version('aiohttp')}; " + "; ".join(versions)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and durations (CI)")
    parser.add_argument("--targets", default="registryd,distribution,nginx")
    parser.add_argument("--repeat", type=int, help="runs per point (default 3)")
    parser.add_argument("--seconds", type=float, help="upper bound of one run")
    parser.add_argument("--memory-layer-mib", type=int, help="layer size of the memory phase")
    parser.add_argument("--workers", type=int, default=2, help="registryd/nginx workers, unpinned")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get references")
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    overrides = {
        "repeat": args.repeat,
        "seconds": args.seconds,
        "memory_layer_bytes": args.memory_layer_mib and args.memory_layer_mib * MiB,
    }

    plan = dataclasses.replace(plan, **{k: v for k, v in overrides.items() if v})
    if not args.no_install:
        ensure_references()
    targets = []
    for name in args.targets.split(","):
        exe = {"distribution": "docker-registry", "nginx": "nginx"}.get(name)
        if exe is not None and find_binary(exe) is None:
            print(f"skipping {name}: {exe} not found", file=sys.stderr)
            continue
        targets.append(name)
    if (os.cpu_count() or 1) < 2:
        print("need at least 2 CPUs to pin servers and load apart", file=sys.stderr)
        return 2
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="registryd-bench-") as tmp:
        bench = Bench(plan, Path(tmp), targets)
        workloads.seed_files(bench.files, bench.small + bench.large)
        uvloop.run(bench.pinned())
        wrk = ""
        if "nginx" in targets and not args.smoke:
            server = bench.start("nginx", "0", 1)
            try:
                wrk = "nginx, 1 MiB, c=64: " + wrk_check(
                    server.url, bench.small[0].path("nginx"), 3
                )
            finally:
                server.stop()
        uvloop.run(bench.auth())
        uvloop.run(bench.unpinned(args.workers))
        uvloop.run(bench.scaling())
    text = report.render(
        bench.points,
        command=command,
        machine=machine(),
        plan=repr(plan),
        minutes=(time.time() - started) / 60,
        wrk=wrk,
    )
    print(text)
    if args.out:
        args.out.write_text(text)
    failed = [p for p in bench.points if p.failed]
    for point in failed:
        print(f"FAILED requests in: {report.progress(point)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
