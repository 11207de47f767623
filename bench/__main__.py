"""``python -m bench``: registryd next to distribution and nginx, interleaved, ratios per point.

One command sets everything up (references via apt-get when missing, each
server in its own temp dir on 127.0.0.1), seeds the same blobs into every
target, runs every point ``--repeat`` times interleaved across targets and
prints (and with ``--out`` writes) a Markdown report. GETs are driven by wrk
(its CPU is reported per point); pushes, HEADs and the rollout by the Python
generator in ``loadgen``.
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

from bench import moto, report, rollout, s3, s3_report, v2, workloads, wrk
from bench.loadgen import Connection, Operation, run_load
from bench.report import Point, Sample
from bench.targets import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    Server,
    ensure_references,
    find_binary,
    make_certificate,
    start_distribution,
    start_nginx,
    start_registryd,
)
from bench.workloads import Blob, MiB, StreamedLayer, UniqueLayers
from bench.wrk import WrkLoad

# The targets that accept pushes and serve metadata (nginx only serves files).
WRITERS = ("registryd", "distribution")
# What --sections may name; the pinned ones share one set of servers.
PINNED_SECTIONS = ("pull-v2", "pull-v1", "push-v2", "push-v1", "metadata", "rollout", "auth")
# s3: its own servers and a moto S3 endpoint (bench/s3.py).
SECTIONS = (*PINNED_SECTIONS, "memory", "tls", "unpinned", "scaling", "s3")
# The registryd of the v1 rows in the pinned section (auth none, as in earlier runs).
V1 = "registryd v1"
# Where the auth section declares its v1 images in the token-mode registryd, apart from the
# v2 repository of the same server.
V1_REPOSITORY = "bench/v1app"
PULL_V2 = "pull v2, Bearer"
PULL_V1 = "pull v1"
PUSH_V2 = "push v2"
PUSH_V1 = "push v1"
METADATA_V2 = "metadata v2, Bearer"
TLS_PULL = "pull over TLS"


@dataclass(frozen=True)
class Plan:
    pull_small_count: int
    pull_small_bytes: int
    pull_sizes: tuple[int, ...]
    pull_concurrency: tuple[int, ...]
    v1_pull_concurrency: tuple[int, ...]
    push_bytes: int
    push_concurrency: tuple[int, ...]
    metadata_concurrency: int
    memory_layer_bytes: int
    memory_concurrency: int
    rollout_nodes: tuple[int, ...]
    rollout_layer_bytes: tuple[int, ...]
    tls_bytes: int
    tls_concurrency: tuple[int, ...]
    seconds: float
    max_operations: int
    repeat: int


FULL = Plan(
    pull_small_count=200,
    pull_small_bytes=MiB,
    pull_sizes=(16 * MiB, 128 * MiB),
    pull_concurrency=(1, 16, 64, 256),
    v1_pull_concurrency=(16, 64),
    push_bytes=16 * MiB,
    push_concurrency=(1, 8, 32),
    metadata_concurrency=64,
    memory_layer_bytes=1024 * MiB,
    memory_concurrency=16,
    rollout_nodes=(100, 500),
    rollout_layer_bytes=(MiB, 4 * MiB, 16 * MiB, 32 * MiB, 64 * MiB),
    tls_bytes=16 * MiB,
    tls_concurrency=(1, 16, 64),
    seconds=3.0,
    max_operations=20000,
    repeat=3,
)
SMOKE = Plan(
    pull_small_count=8,
    pull_small_bytes=64 * 1024,
    pull_sizes=(256 * 1024,),
    pull_concurrency=(1, 4),
    v1_pull_concurrency=(4,),
    push_bytes=256 * 1024,
    push_concurrency=(1, 2),
    metadata_concurrency=4,
    memory_layer_bytes=4 * MiB,
    memory_concurrency=2,
    rollout_nodes=(4,),
    rollout_layer_bytes=(16 * 1024, 32 * 1024, 64 * 1024, 128 * 1024, 256 * 1024),
    tls_bytes=256 * 1024,
    tls_concurrency=(2,),
    seconds=0.3,
    max_operations=200,
    repeat=1,
)

# What one measurement runs: GETs driven by wrk, or operations of the Python generator.
Load = WrkLoad | Iterator[Operation]
# The load of one target of a point, built (tokens fetched, pushes hashed) off the clock.
MakeLoad = Callable[[str], Awaitable[Load]]


class Bench:
    def __init__(
        self, plan: Plan, workdir: Path, targets: list[str], sections: tuple[str, ...] = SECTIONS
    ) -> None:
        self.plan, self.workdir, self.targets = plan, workdir, targets
        self.sections = frozenset(sections)
        self.points: list[Point] = []
        self.nonce = secrets.token_hex(4)
        self.small = [
            workloads.make_blob(f"pull-small-{i}", plan.pull_small_bytes)
            for i in range(plan.pull_small_count)
        ]
        self.large = [workloads.make_blob(f"pull-{size}", size) for size in plan.pull_sizes]
        self.tls_blob = workloads.make_blob(f"tls-{plan.tls_bytes}", plan.tls_bytes)
        self.image = v2.image(self.small[:1])
        # Blobs pulled after a push point, kept when pushed layers of their size are removed.
        self.pull_digests = frozenset(b.digest_hex for b in [*self.small, *self.large])
        self.files = workdir / "files"
        # The CPUs wrk may use: CPU 1 in the pinned sections, any in the unpinned ones.
        self.client_cpus: str | None = "1"

    # Servers --------------------------------------------------------------------

    def start(self, name: str, cpus: str | None, workers: int, auth_mode: str = "none") -> Server:
        sub = self.workdir / f"{name}-{cpus or 'all'}-{workers}-{auth_mode}"
        if name == "registryd" and auth_mode == "token":
            # Anonymous pulls refused: every rollout node trades credentials for a token,
            # as nodes pulling from a private registry do.
            settings = {"REGISTRYD_ANONYMOUS_PULL": "false"}
            return start_registryd(sub, cpus, workers, auth_mode=auth_mode, settings=settings)
        if name == "registryd":
            return start_registryd(sub, cpus, workers, auth_mode=auth_mode)
        if name == "distribution":
            return start_distribution(sub, cpus)
        return start_nginx(sub, self.files, cpus, workers)

    async def seed(self, servers: Mapping[str, Server]) -> None:
        """The pull blobs through v1 (registryd, auth none) or v2 (distribution)."""
        blobs = self.small + self.large
        for server in servers.values():
            conn = Connection("127.0.0.1", server.port)
            try:
                if server.name == "registryd":
                    await workloads.seed_registryd(conn, blobs)
                elif server.name == "distribution":
                    await v2.seed(conn, blobs, self.image, "latest", {})
            finally:
                conn.close()

    async def seed_v2(self, server: Server, blobs: list[Blob], img: v2.Image, tag: str) -> None:
        """``blobs`` and ``img`` through v2, with a push token when the server wants one."""
        conn = Connection("127.0.0.1", server.port, server.tls_context())
        try:
            headers = await self.bearer(server, "pull,push")
            await v2.seed(conn, blobs, img, tag, headers)
        finally:
            conn.close()

    async def bearer(self, server: Server, actions: str) -> dict[str, str]:
        """A fresh Bearer header of the admin for bench/app, or none from a server without
        token auth (distribution; registryd in auth none)."""
        conn = Connection("127.0.0.1", server.port, server.tls_context())
        try:
            resp = await conn.request("GET", "/v2/")
            if resp.status != 401:
                return {}
            return await v2.bearer(conn, actions, v2.basic(ADMIN_USER, ADMIN_PASSWORD))
        finally:
            conn.close()

    # Runs -------------------------------------------------------------------------

    async def measure(
        self,
        server: Server,
        load: Load,
        concurrency: int,
        max_seconds: float | None = None,
        max_operations: int | None = None,
    ) -> Sample:
        if isinstance(load, WrkLoad):
            load = await self.sized(server, load)
        server.reset_peak_rss()
        cpu0, usage0 = server.cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF)
        if isinstance(load, WrkLoad):
            run = await wrk.run(
                "127.0.0.1",
                server.port,
                load,
                concurrency,
                max_seconds or self.plan.seconds,
                self.workdir / "wrk",
                self.client_cpus,
            )
            result, client_cpu = run.result, run.client_cpu_seconds
        else:
            result = await run_load(
                "127.0.0.1",
                server.port,
                load,
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

    async def sized(self, server: Server, load: WrkLoad) -> WrkLoad:
        """Check the first path answers 200 with these headers (a refused token fails here,
        with its reason, not as thousands of wrk status errors); size bodies not given."""
        conn = Connection("127.0.0.1", server.port, server.tls_context())
        try:
            resp = await conn.request("GET", load.paths[0], headers=dict(load.headers))
        finally:
            conn.close()
        if resp.status != 200:
            raise RuntimeError(f"{server.name} GET {load.paths[0]}: HTTP {resp.status}")
        if load.body_bytes:
            return load
        return dataclasses.replace(load, body_bytes=[resp.body_bytes])

    async def interleaved(
        self,
        servers: Mapping[str, Server],
        section: str,
        label: str,
        make: MakeLoad,
        concurrency: int,
        unit: str = "MB/s",
        only: tuple[str, ...] = (),
    ) -> None:
        """Measure one point ``repeat`` times per target; ``make(target)`` builds each
        measurement's load off the clock."""
        point = Point(section, label, concurrency, unit)
        for _ in range(self.plan.repeat):
            for name, server in servers.items():
                if only and name not in only:
                    continue
                sample = await self.measure(server, await make(name), concurrency)
                point.samples.setdefault(name, []).append(sample)
                await asyncio.sleep(0.2)
        self.points.append(point)
        print(report.progress(point), file=sys.stderr, flush=True)

    def blob_pulls(
        self, servers: Mapping[str, Server], blobs: list[Blob], v1: bool = False
    ) -> MakeLoad:
        """GETs of ``blobs`` in turn: registryd's v2 path with a Bearer token (or its v1 path,
        no header, when ``v1``), distribution's v2 path (no auth), nginx's file."""

        async def make(name: str) -> Load:
            sizes = [blob.size for blob in blobs]
            if name == "nginx":
                return WrkLoad([b.path("nginx") for b in blobs], sizes, scheme="http")
            if name == "registryd" and v1:
                return WrkLoad([b.path("registryd") for b in blobs], sizes)
            headers = await self.bearer(servers[name], "pull")
            return WrkLoad([v2.blob_path(b.digest_hex) for b in blobs], sizes, headers)

        return make

    async def pinned(self) -> None:
        os.sched_setaffinity(0, {1})  # the load generator: CPU 1; servers: CPU 0
        self.client_cpus = "1"
        starters: dict[str, Callable[[], Server]] = {
            n: functools.partial(self.start, n, "0", 1, "token" if n == "registryd" else "none")
            for n in self.targets
        }
        if "registryd" in self.targets:
            # The v1 rows (as before: auth none) and the memory phase.
            starters[V1] = functools.partial(self.start, "registryd", "0", 1)
        with running(starters) as all_servers:
            servers = {n: s for n, s in all_servers.items() if n != V1}
            v1_servers = {
                **servers,
                **({"registryd": all_servers[V1]} if V1 in all_servers else {}),
            }
            await self.seed({n: s for n, s in v1_servers.items() if n != "registryd"})
            if "registryd" in servers:
                await self.seed({V1: v1_servers["registryd"]})
                await self.seed_v2(
                    servers["registryd"], self.small + self.large, self.image, "latest"
                )
            if "pull-v2" in self.sections:
                await self.pulls(servers, PULL_V2, self.plan.pull_concurrency)
            if "pull-v1" in self.sections:
                await self.pulls(v1_servers, PULL_V1, self.plan.v1_pull_concurrency, v1=True)
            for chunked in (False, True) if "push-v2" in self.sections else ():
                await self.v2_pushes(servers, chunked)
            layers = UniqueLayers(self.plan.push_bytes, self.nonce)
            for conc in self.plan.push_concurrency if "push-v1" in self.sections else ():
                await self.pushes(
                    v1_servers, PUSH_V1, report.size(self.plan.push_bytes), layers, conc
                )
            if "metadata" in self.sections:
                await self.metadata(servers, v1_servers)
            if "rollout" in self.sections:
                await self.rollout(servers)
            if "registryd" in servers and "auth" in self.sections:
                await self.auth(v1_servers["registryd"], servers["registryd"])
            if "memory" in self.sections:
                await self.memory(v1_servers)

    async def metadata(
        self, servers: Mapping[str, Server], v1_servers: Mapping[str, Server]
    ) -> None:
        await self.manifests(servers)
        for kind in ("json", "ancestry", "tags"):
            await self.interleaved(
                v1_servers,
                "metadata v1",
                f"{kind} (distribution: manifest GET)",
                functools.partial(self.metadata_v1, kind=kind),
                self.plan.metadata_concurrency,
                unit="req/s",
                only=WRITERS,
            )

    async def pulls(
        self,
        servers: Mapping[str, Server],
        section: str,
        concurrency: tuple[int, ...],
        v1: bool = False,
    ) -> None:
        points = [(f"{len(self.small)} x {report.size(self.plan.pull_small_bytes)}", self.small)]
        points += [(report.size(blob.size), [blob]) for blob in self.large]
        for label, blobs in points:
            for conc in concurrency:
                await self.interleaved(
                    servers, section, label, self.blob_pulls(servers, blobs, v1), conc
                )

    async def metadata_v1(self, name: str, kind: str) -> Load:
        if name == "registryd":
            blob = self.small[0]
            path = {
                "json": f"/v1/images/{blob.image_id}/json",
                "ancestry": f"/v1/images/{blob.image_id}/ancestry",
                "tags": f"/v1/repositories/{workloads.REPOSITORY}/tags",
            }[kind]
            return WrkLoad([path], [])
        return WrkLoad([v2.manifest_path("latest")], [], {"Accept": v2.ACCEPT})

    async def manifests(self, servers: Mapping[str, Server]) -> None:
        """v2 manifest GET (wrk) and HEAD (the Python generator: wrk cannot read HEAD answers)."""

        async def get(name: str) -> Load:
            headers = {**await self.bearer(servers[name], "pull"), "Accept": v2.ACCEPT}
            return WrkLoad([v2.manifest_path("latest")], [], headers)

        async def head(name: str) -> Load:
            return v2.manifest_heads("latest", await self.bearer(servers[name], "pull"))

        for label, make in (("manifest GET", get), ("manifest HEAD (Python generator)", head)):
            await self.interleaved(
                servers,
                METADATA_V2,
                label,
                make,
                self.plan.metadata_concurrency,
                unit="req/s",
                only=WRITERS,
            )

    async def v2_pushes(self, servers: Mapping[str, Server], chunked: bool) -> None:
        layers = UniqueLayers(self.plan.push_bytes, f"{self.nonce}-v2-{int(chunked)}")
        flow = "POST+PATCH+PUT" if chunked else "POST+PUT"

        async def make(name: str) -> Load:
            return v2.pushes(layers, chunked, await self.bearer(servers[name], "pull,push"))

        for conc in self.plan.push_concurrency:
            await self.interleaved(
                servers,
                PUSH_V2,
                f"{report.size(self.plan.push_bytes)} {flow}",
                make,
                conc,
                only=WRITERS,
            )
            await remove_pushed(servers, layers.size, self.pull_digests)

    async def pushes(
        self,
        servers: Mapping[str, Server],
        section: str,
        label: str,
        layers: UniqueLayers,
        concurrency: int,
    ) -> None:
        """One push point; servers named other than "distribution" speak v1 (registryd)."""
        # Enough pre-hashed v1 pushes for 600 MB/s over the whole run (3x what we reach).
        per_run = int(self.plan.seconds * 600e6 / layers.size) + concurrency
        needed = min(per_run, self.plan.max_operations)

        async def make(name: str) -> Load:
            if name != "distribution":
                await layers.prepare(needed)
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
        )
        await remove_pushed(servers, layers.size, self.pull_digests)
        if layers.hashed_in_run > before:
            print(
                f"note: {layers.hashed_in_run - before} registryd pushes of {section} {label} "
                f"c={concurrency} were hashed by the load generator inside the run",
                file=sys.stderr,
            )

    async def memory(self, servers: Mapping[str, Server]) -> None:
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

    async def rollout(self, servers: Mapping[str, Server]) -> None:
        """N nodes pull one image (manifest, config, five layers) at once, registryd with
        token auth (anonymous pulls refused, so every node trades its credentials for a
        token first) next to distribution without auth; the pinned servers."""
        layers = [
            workloads.make_blob(f"rollout-{i}-{size}", size)
            for i, size in enumerate(self.plan.rollout_layer_bytes)
        ]
        img = v2.image(layers)
        servers = {n: s for n, s in servers.items() if n in WRITERS}
        for server in servers.values():
            await self.seed_v2(server, layers, img, "rollout")
        credentials = v2.basic(ADMIN_USER, ADMIN_PASSWORD)
        for nodes in self.plan.rollout_nodes:
            point = Point(report.ROLLOUT, f"{nodes} nodes", nodes, "MB/s")
            for name, server in servers.items():
                node = rollout.Node("127.0.0.1", server.port, "rollout", credentials)
                cpu0, usage0 = server.cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF)
                result = await rollout.rollout(node, nodes)
                usage1 = resource.getrusage(resource.RUSAGE_SELF)
                client = usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime
                point.samples[name] = [
                    Sample(
                        result=result,
                        server_cpu=(server.cpu_seconds() - cpu0) / result.seconds,
                        client_cpu=client / result.seconds,
                        peak_rss_bytes=server.peak_rss_bytes(),
                    )
                ]
                await asyncio.sleep(0.5)
            self.points.append(point)
            print(report.progress(point), file=sys.stderr, flush=True)

    async def tls(self) -> None:
        """Pulls over TLS: registryd (token auth, v2 with Bearer) next to nginx serving the same
        file with the same certificate, both TLS 1.2/1.3 only; pinned."""
        os.sched_setaffinity(0, {1})
        self.client_cpus = "1"
        pair = make_certificate(self.workdir / "tls")
        starters: dict[str, Callable[[], Server]] = {}
        if "registryd" in self.targets:
            starters["registryd"] = lambda: start_registryd(
                self.workdir / "tls-registryd", "0", 1, auth_mode="token", tls=pair
            )
        if "nginx" in self.targets:
            starters["nginx"] = lambda: start_nginx(
                self.workdir / "tls-nginx", self.files, "0", 1, tls=pair
            )
        blob = self.tls_blob
        with running(starters) as servers:
            if "registryd" in servers:
                await self.seed_v2(servers["registryd"], [blob], v2.image([blob]), "tls")

            async def make(name: str) -> Load:
                if name == "nginx":
                    return WrkLoad([blob.path("nginx")], [blob.size], scheme="https")
                headers = await self.bearer(servers[name], "pull")
                return WrkLoad([v2.blob_path(blob.digest_hex)], [blob.size], headers, "https")

            for conc in self.plan.tls_concurrency:
                await self.interleaved(servers, TLS_PULL, report.size(blob.size), make, conc)

    async def scaling(self) -> None:
        """registryd alone: 1 worker on one CPU next to 2 workers on two, on the loads
        that are bound by the server's CPU (pushes hash every byte twice; metadata).

        The load generator is left free, as the second CPU is given to the server.
        """
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        self.client_cpus = None
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

            async def json_reads(_: str) -> Load:
                return await self.metadata_v1("registryd", "json")

            await self.interleaved(
                servers,
                report.SCALING,
                "metadata json",
                json_reads,
                self.plan.metadata_concurrency,
                unit="req/s",
            )

    async def auth(self, off: Server, token: Server) -> None:
        """registryd with auth none next to token auth on the same pulls: v1 (an index token,
        each request checked against the repositories that hold the image) and v2 (Bearer).
        The pinned servers: ``off`` already holds the v1 blobs, ``token`` the v2 ones."""
        servers = dict(zip(AUTH_MODES, (off, token), strict=True))
        conn = Connection("127.0.0.1", token.port)
        try:
            headers = await workloads.seed_registryd_with_token(
                conn, self.small, ADMIN_USER, ADMIN_PASSWORD, V1_REPOSITORY
            )
        finally:
            conn.close()
        await self.seed_v2(off, self.small, self.image, "latest")
        label = f"{len(self.small)} x {report.size(self.plan.pull_small_bytes)}"
        sizes = [blob.size for blob in self.small]

        async def v1_pulls(name: str) -> Load:
            paths = [blob.path("registryd") for blob in self.small]
            return WrkLoad(paths, sizes, headers if name == AUTH_MODES[1] else {})

        async def v2_pulls(name: str) -> Load:
            paths = [v2.blob_path(blob.digest_hex) for blob in self.small]
            return WrkLoad(paths, sizes, await self.bearer(servers[name], "pull"))

        conc = self.plan.pull_concurrency[-2]
        await self.interleaved(servers, report.AUTH, f"v1 pull {label}", v1_pulls, conc)
        await self.interleaved(servers, report.AUTH, f"v2 pull {label}", v2_pulls, conc)

    async def unpinned(self, workers: int) -> None:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        self.client_cpus = None
        with running(
            {n: functools.partial(self.start, n, None, workers) for n in self.targets}
        ) as servers:
            await self.seed(servers)
            section = f"unpinned, {workers} workers"
            await self.interleaved(
                servers,
                section,
                f"pull {len(self.small)} x {report.size(self.plan.pull_small_bytes)}",
                self.blob_pulls(servers, self.small, v1=True),
                self.plan.pull_concurrency[-2],
            )
            blob = self.large[-1]
            await self.interleaved(
                servers,
                section,
                f"pull {report.size(blob.size)}",
                self.blob_pulls(servers, [blob], v1=True),
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
AUTH_MODES = ("registryd, auth none", "registryd, auth token (v1: Token, v2: Bearer)")


def _unlink_files_of_size(root: Path, size: int, keep: frozenset[str] = frozenset()) -> int:
    removed = 0
    for path in root.rglob("*"):
        if keep.intersection(path.parts):
            continue
        with contextlib.suppress(OSError):
            if path.is_file() and path.stat().st_size == size:
                path.unlink()
                removed += size
    return removed


async def remove_pushed(servers: Mapping[str, Server], size: int, keep: frozenset[str]) -> None:
    """Delete what a push point stored (files of exactly ``size`` bytes, except those under a
    name in ``keep``: the pull blobs' digests): a full run pushes tens of GB otherwise.
    Nothing reads pushed layers again; the space is not waited for."""
    for server in servers.values():
        await asyncio.to_thread(_unlink_files_of_size, server.workdir, size, keep)


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
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated, of: {','.join(SECTIONS)} (default: all)",
    )
    args = parser.parse_args(argv)
    sections = tuple(args.sections.split(","))
    if unknown := [name for name in sections if name not in SECTIONS]:
        parser.error(f"unknown section(s) {','.join(unknown)}; known: {','.join(SECTIONS)}")
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
    if not wrk.available():
        print("wrk not found: install the Debian package wrk", file=sys.stderr)
        return 2
    # 500 rollout nodes hold 1,500 connections; servers inherit the limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="registryd-bench-") as tmp:
        bench = Bench(plan, Path(tmp), targets, sections)
        workloads.seed_files(bench.files, bench.small + bench.large)
        workloads.seed_files(bench.files, [bench.tls_blob])
        if bench.sections.intersection((*PINNED_SECTIONS, "memory")):
            uvloop.run(bench.pinned())
        if "tls" in bench.sections:
            uvloop.run(bench.tls())
        if "unpinned" in bench.sections:
            uvloop.run(bench.unpinned(args.workers))
        if "scaling" in bench.sections:
            uvloop.run(bench.scaling())
        s3_outcome = None
        if "s3" in bench.sections and not moto.available():
            print("skipping s3: moto's server is not installed (pip install 'moto[server]')")
        elif "s3" in bench.sections:
            s3_outcome = uvloop.run(s3.run_section(bench))
    text = report.render(
        bench.points,
        command=command,
        machine=machine(),
        plan=repr(plan),
        minutes=(time.time() - started) / 60,
    )
    if s3_outcome is not None:
        text += s3_report.render(s3_outcome, command)
    print(text)
    if args.out:
        args.out.write_text(text)
    failed = [p for p in bench.points if p.failed]
    for point in failed:
        print(f"FAILED requests in: {report.progress(point)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
